package check

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var chartDir = filepath.Join("..", "helm", "haldir")

// valueSets are the values the chart is checked with: the defaults alone
// (which lint, but refuse to render without keys), the defaults plus the
// three keys a first install must give, and the production shape.
var valueSets = []struct {
	name   string
	file   string // under the chart's ci/; "" is the defaults alone
	render bool   // false: rendering must fail, asking for the keys
}{
	{"defaults", "", false},
	{"minimal", "minimal-values.yaml", true},
	{"hpa-existing-secret", "hpa-existing-secret-values.yaml", true},
}

func values(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := ReadValues(filepath.Join(chartDir, "ci", file))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func render(t *testing.T, file string) *Rendered {
	t.Helper()
	r, err := Template("haldir", chartDir, values(t, file))
	if err != nil {
		t.Fatalf("helm template with %s: %v", file, err)
	}
	return r
}

func TestHelmLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			problems, infos := Lint(chartDir, values(t, vs.file))
			for _, i := range infos {
				t.Logf("helm lint: %s", i)
			}
			if len(problems) > 0 {
				t.Errorf("helm lint --strict with %s values:\n%s", vs.name, strings.Join(problems, "\n"))
			}
		})
	}
}

// TestHelmLintFails shows the linter is live: a chart-breaking value is reported.
func TestHelmLintFails(t *testing.T) {
	vals := values(t, "minimal-values.yaml")
	vals["replicaCount"] = "two"
	problems, _ := Lint(chartDir, vals)
	if len(problems) == 0 {
		t.Fatal("helm lint accepted replicaCount: two")
	}
	t.Logf("helm lint, as it should, refused: %s", strings.Join(problems, "; "))
}

func TestHelmTemplateNeedsKeys(t *testing.T) {
	_, err := Template("haldir", chartDir, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "secret.encryptionKey is required unless existingSecret") {
		t.Fatalf("helm template without keys: got %v, want the missing encryption key named", err)
	}
}

func TestHelmTemplateMinimal(t *testing.T) {
	r := render(t, "minimal-values.yaml")
	want := []string{
		"Deployment/haldir", "Job/haldir-migrate", "PodDisruptionBudget/haldir",
		"Secret/haldir", "Service/haldir",
	}
	if diff := cmp.Diff(want, r.Kinds()); diff != "" {
		t.Fatalf("objects (-want +got):\n%s", diff)
	}
	dep := one(t, r, "Deployment")
	expect(t, dep, map[string]any{
		"spec.replicas": 2,
		"spec.strategy.rollingUpdate.maxUnavailable":                               0,
		"spec.template.spec.automountServiceAccountToken":                          false,
		"spec.template.spec.terminationGracePeriodSeconds":                         60,
		"spec.template.spec.securityContext.runAsNonRoot":                          true,
		"spec.template.spec.securityContext.runAsUser":                             65532,
		"spec.template.spec.securityContext.seccompProfile.type":                   "RuntimeDefault",
		"spec.template.spec.containers.0.args":                                     []any{"serve"},
		"spec.template.spec.containers.0.image":                                    "haldir:dev",
		"spec.template.spec.containers.0.readinessProbe.httpGet.path":              "/readyz",
		"spec.template.spec.containers.0.livenessProbe.httpGet.path":               "/healthz",
		"spec.template.spec.containers.0.startupProbe.httpGet.path":                "/healthz",
		"spec.template.spec.containers.0.readinessProbe.httpGet.port":              "http",
		"spec.template.spec.containers.0.ports.0.containerPort":                    8000,
		"spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem":   true,
		"spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation": false,
		"spec.template.spec.containers.0.securityContext.runAsNonRoot":             true,
		"spec.template.spec.containers.0.securityContext.runAsUser":                65532,
		"spec.template.spec.containers.0.securityContext.capabilities.drop":        []any{"ALL"},
		"spec.template.spec.containers.0.securityContext.seccompProfile.type":      "RuntimeDefault",
		"spec.template.spec.containers.0.resources.requests.cpu":                   "100m",
		"spec.template.spec.containers.0.resources.requests.memory":                "128Mi",
		"spec.template.spec.containers.0.resources.limits.memory":                  "512Mi",
		"spec.template.spec.containers.0.lifecycle.preStop.sleep.seconds":          5,
	})
	if !has(dep, "spec.template.metadata.annotations.checksum/secret") {
		t.Error("the pod template has no checksum/secret annotation: new keys would not roll the pods")
	}
	env := envOf(t, dep, "spec.template.spec.containers.0.env")
	for name, ref := range map[string]string{
		"DATABASE_URL":           "haldir/DATABASE_URL",
		"HALDIR_ENCRYPTION_KEY":  "haldir/HALDIR_ENCRYPTION_KEY",
		"HALDIR_SIGNING_KEY":     "haldir/HALDIR_SIGNING_KEY",
		"HALDIR_ADMIN_TOKEN":     "haldir/HALDIR_ADMIN_TOKEN?",
		"HALDIR_EVENT_STORE_URL": "haldir/HALDIR_EVENT_STORE_URL?",
		"HALDIR_ADDR":            "=:8000",
	} {
		if env[name] != ref {
			t.Errorf("env %s = %q, want %q", name, env[name], ref)
		}
	}

	// The selector must pick the server pods and only them.
	sel := get(t, dep, "spec.selector.matchLabels")
	for _, m := range []string{"Service", "PodDisruptionBudget"} {
		o := one(t, r, m)
		path := "spec.selector.matchLabels"
		if m == "Service" {
			path = "spec.selector"
		}
		if diff := cmp.Diff(sel, get(t, o, path)); diff != "" {
			t.Errorf("%s selector differs from the Deployment's (-deployment +%s):\n%s", m, m, diff)
		}
	}
	expect(t, one(t, r, "PodDisruptionBudget"), map[string]any{"spec.minAvailable": 1})
	expect(t, one(t, r, "Service"), map[string]any{"spec.ports.0.port": 8000, "spec.ports.0.targetPort": "http"})

	// Keys and the migrations Job exist before the pods: both are
	// pre-install hooks, the Secret first.
	secret, job := one(t, r, "Secret"), one(t, r, "Job")
	if diff := cmp.Diff([]string{"pre-install", "pre-rollback", "pre-upgrade"}, secret.Hooks); diff != "" {
		t.Errorf("Secret hooks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pre-install", "pre-upgrade"}, job.Hooks); diff != "" {
		t.Errorf("Job hooks (-want +got):\n%s", diff)
	}
	sw, _ := strconv.Atoi(fmt.Sprint(get(t, secret, "metadata.annotations.helm\\.sh/hook-weight")))
	jw, _ := strconv.Atoi(fmt.Sprint(get(t, job, "metadata.annotations.helm\\.sh/hook-weight")))
	if sw >= jw {
		t.Errorf("Secret hook weight %d is not below the Job's %d: the Job could start before its Secret", sw, jw)
	}
	expect(t, job, map[string]any{
		"spec.template.spec.restartPolicy":                                       "Never",
		"spec.template.spec.containers.0.args":                                   []any{"migrate", "up"},
		"spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem": true,
		"spec.template.spec.securityContext.runAsUser":                           65532,
	})
	if diff := cmp.Diff(map[string]string{"DATABASE_URL": "haldir/DATABASE_URL"}, envOf(t, job, "spec.template.spec.containers.0.env")); diff != "" {
		t.Errorf("the migrations Job gets more than the database (-want +got):\n%s", diff)
	}
	if labels := get(t, job, "spec.template.metadata.labels").(map[string]any); labels["app.kubernetes.io/component"] == "server" {
		t.Error("the migrations Job's pods carry the server labels: the Service would route to them")
	}
	data := get(t, secret, "data").(map[string]any)
	if len(data) != 3 {
		t.Errorf("the Secret holds %d keys, want the 3 given (no empty optional ones): %v", len(data), keysOf(data))
	}
	if !strings.Contains(r.Notes, "kubectl -n haldir rollout status deployment/haldir") {
		t.Errorf("NOTES.txt does not say how to wait for the rollout:\n%s", r.Notes)
	}
}

func TestHelmTemplateHPAExistingSecret(t *testing.T) {
	r := render(t, "hpa-existing-secret-values.yaml")
	want := []string{
		"Deployment/haldir", "HorizontalPodAutoscaler/haldir", "Job/haldir-migrate",
		"PodDisruptionBudget/haldir", "Service/haldir",
	}
	if diff := cmp.Diff(want, r.Kinds()); diff != "" {
		t.Fatalf("objects (-want +got):\n%s", diff)
	}
	dep := one(t, r, "Deployment")
	if has(dep, "spec.replicas") {
		t.Error("the Deployment sets replicas while the HPA owns the count: every upgrade would reset it")
	}
	if has(dep, "spec.template.metadata.annotations.checksum/secret") {
		t.Error("a checksum of a Secret the chart does not render")
	}
	expect(t, dep, map[string]any{"spec.template.spec.containers.0.image": "registry.example.com/haldir:1.2.3"})
	env := envOf(t, dep, "spec.template.spec.containers.0.env")
	for name, ref := range map[string]string{
		"DATABASE_URL":           "haldir-keys/DATABASE_URL",
		"HALDIR_ENCRYPTION_KEY":  "haldir-keys/HALDIR_ENCRYPTION_KEY",
		"HALDIR_SIGNING_KEY":     "haldir-keys/HALDIR_SIGNING_KEY",
		"HALDIR_ADMIN_TOKEN":     "haldir-keys/HALDIR_ADMIN_TOKEN?",
		"HALDIR_EVENT_STORE_URL": "haldir-keys/HALDIR_EVENT_STORE_URL?",
		"HALDIR_RATE_LIMIT_NOTE": "=extraEnv reaches the server container",
	} {
		if env[name] != ref {
			t.Errorf("env %s = %q, want %q", name, env[name], ref)
		}
	}
	expect(t, one(t, r, "Job"), map[string]any{"spec.template.spec.containers.0.env.0.valueFrom.secretKeyRef.name": "haldir-keys"})
	expect(t, one(t, r, "HorizontalPodAutoscaler"), map[string]any{
		"apiVersion":                                        "autoscaling/v2",
		"spec.scaleTargetRef.kind":                          "Deployment",
		"spec.scaleTargetRef.name":                          "haldir",
		"spec.minReplicas":                                  3,
		"spec.maxReplicas":                                  10,
		"spec.metrics.0.resource.name":                      "cpu",
		"spec.metrics.0.resource.target.averageUtilization": 60,
		"spec.metrics.1.resource.name":                      "memory",
		"spec.metrics.1.resource.target.averageUtilization": 80,
	})
	expect(t, one(t, r, "PodDisruptionBudget"), map[string]any{"spec.minAvailable": 2})
}

// TestHelmTemplateExistingSecretRefusesValues: with existingSecret the chart
// creates no Secret, so a key or URL given in values would be dropped
// silently; it refuses instead.
func TestHelmTemplateExistingSecretRefusesValues(t *testing.T) {
	for _, c := range []struct{ name, key, sub string }{
		{"an event store URL", "eventStore", "url"},
		{"an encryption key", "secret", "encryptionKey"},
		{"an admin token", "secret", "adminToken"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vals := values(t, "hpa-existing-secret-values.yaml")
			vals[c.key] = map[string]any{c.sub: "dropped-if-not-refused"}
			_, err := Template("haldir", chartDir, vals)
			if err == nil || !strings.Contains(err.Error(), `existingSecret "haldir-keys" is set`) {
				t.Fatalf("got %v, want the values refused", err)
			}
		})
	}
}

func one(t *testing.T, r *Rendered, kind string) Manifest {
	t.Helper()
	m, err := r.One(kind)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lookup follows a dotted path (list indexes as numbers, `\.` for a dot
// inside a key) through a manifest.
func lookup(m Manifest, path string) (any, bool) {
	var cur any = m.Object
	parts := strings.Split(strings.ReplaceAll(path, `\.`, "\x00"), ".")
	for _, p := range parts {
		p = strings.ReplaceAll(p, "\x00", ".")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func has(m Manifest, path string) bool {
	_, ok := lookup(m, path)
	return ok
}

func get(t *testing.T, m Manifest, path string) any {
	t.Helper()
	v, ok := lookup(m, path)
	if !ok {
		t.Fatalf("%s/%s has no %s", m.Kind, m.Name, path)
	}
	return v
}

// expect compares values at paths; numbers compare by value (YAML decodes
// them as float64).
func expect(t *testing.T, m Manifest, want map[string]any) {
	t.Helper()
	for path, w := range want {
		got, ok := lookup(m, path)
		if !ok {
			t.Errorf("%s/%s: no %s, want %v", m.Kind, m.Name, path, w)
			continue
		}
		if n, ok := w.(int); ok {
			w = float64(n)
		}
		if !reflect.DeepEqual(w, got) {
			t.Errorf("%s/%s: %s = %#v, want %#v", m.Kind, m.Name, path, got, w)
		}
	}
}

// envOf maps each variable to "=value", or "secret/key" with "?" when optional.
func envOf(t *testing.T, m Manifest, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range get(t, m, path).([]any) {
		e := e.(map[string]any)
		name := e["name"].(string)
		if v, ok := e["value"]; ok {
			out[name] = "=" + fmt.Sprint(v)
			continue
		}
		ref := e["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
		s := fmt.Sprintf("%s/%s", ref["name"], ref["key"])
		if ref["optional"] == true {
			s += "?"
		}
		out[name] = s
	}
	return out
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
