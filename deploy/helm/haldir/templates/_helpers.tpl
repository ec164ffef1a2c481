{{/* The chart name, or nameOverride. */}}
{{- define "haldir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object: fullnameOverride, else RELEASE-haldir (or RELEASE when it already says haldir). */}}
{{- define "haldir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The labels of every object, without a component. */}}
{{- define "haldir.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "haldir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels of the server's objects. */}}
{{- define "haldir.labels" -}}
{{ include "haldir.baseLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* The labels that select the server pods; the migrations Job's pods carry other ones. */}}
{{- define "haldir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "haldir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "haldir.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding the keys: existingSecret, or the one this chart creates. */}}
{{- define "haldir.secretName" -}}
{{- .Values.existingSecret | default (include "haldir.fullname" .) }}
{{- end }}

{{/* DATABASE_URL from the Secret: all the migrations Job gets. */}}
{{- define "haldir.databaseUrlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "haldir.secretName" . }}
      key: {{ .Values.secretKeys.databaseUrl }}
{{- end }}

{{/* Everything the server gets from the Secret. */}}
{{- define "haldir.secretEnv" -}}
{{ include "haldir.databaseUrlEnv" . }}
- name: HALDIR_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "haldir.secretName" . }}
      key: {{ .Values.secretKeys.encryptionKey }}
- name: HALDIR_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "haldir.secretName" . }}
      key: {{ .Values.secretKeys.signingKey }}
- name: HALDIR_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "haldir.secretName" . }}
      key: {{ .Values.secretKeys.adminToken }}
      optional: true
- name: HALDIR_EVENT_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "haldir.secretName" . }}
      key: {{ .Values.secretKeys.eventStoreUrl }}
      optional: true
{{- end }}

{{/* Pod-level settings shared by the server and the migrations Job. */}}
{{- define "haldir.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
