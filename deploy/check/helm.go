package check

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// Helm's own packages are used directly rather than through pkg/action (the
// CLI's layer over them), which would compile a Kubernetes client, OCI
// registry and storage drivers this check never uses: it doubles the build.

// KubeVersion is the Kubernetes version the chart is linted and rendered
// for, the one the schemas come from. As a library Helm would assume 1.20
// (its release builds set their client-go minor by ldflags instead).
func KubeVersion() *chartutil.KubeVersion {
	_, v, _ := strings.Cut(KubernetesModule, "@")
	kv, err := chartutil.ParseKubeVersion(v)
	if err != nil {
		panic("check: KubernetesModule has no version: " + err.Error())
	}
	return kv
}

// Lint runs the linter `helm lint --strict --kube-version KubeVersion()`
// runs on the chart in dir, with vals over its defaults. problems are what
// --strict fails on (errors and warnings); infos are the rest.
func Lint(dir string, vals map[string]any) (problems, infos []string) {
	l := lint.AllWithKubeVersionAndSchemaValidation(dir, vals, "haldir", KubeVersion(), false)
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev {
			problems = append(problems, m.Error())
		} else {
			infos = append(infos, m.Error())
		}
	}
	return problems, infos
}

// Manifest is one object `helm template` prints.
type Manifest struct {
	Source string   // the template, e.g. haldir/templates/deployment.yaml
	Hooks  []string // the Helm hook events, e.g. pre-install; none for a plain object
	Kind   string
	Name   string
	YAML   string
	Object map[string]any
}

// Rendered is what `helm template` prints, split: hooks and plain objects,
// and NOTES.txt, which Helm prints after an install.
type Rendered struct {
	Manifests []Manifest
	Notes     string
}

// Template renders the chart in dir as `helm template RELEASE dir
// --namespace haldir --kube-version KubeVersion()` does: the same steps as Helm's install action in
// client-only mode (kubeVersion checked,
// values coalesced and checked against values.schema.json, templates
// rendered, then split into hooks and objects by releaseutil).
func Template(release, dir string, vals map[string]any) (*Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, err
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *KubeVersion()
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("check: chart requires kubeVersion %s, incompatible with Kubernetes %s", kv, caps.KubeVersion.String())
	}
	opts := chartutil.ReleaseOptions{Name: release, Namespace: "haldir", Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	out := &Rendered{}
	for name, body := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			if name == path.Join(ch.Name(), "templates", "NOTES.txt") {
				out.Notes = body
			}
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	for _, m := range manifests {
		if err := out.add(m.Name, m.Content, nil); err != nil {
			return nil, err
		}
	}
	for _, h := range hooks {
		var events []string
		for _, e := range h.Events {
			events = append(events, string(e))
		}
		sort.Strings(events)
		if err := out.add(h.Path, h.Manifest, events); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *Rendered) add(source, doc string, hooks []string) error {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		return fmt.Errorf("check: %s: %v", source, err)
	}
	if obj == nil {
		return fmt.Errorf("check: %s renders an empty document", source)
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	kind, _ := obj["kind"].(string)
	r.Manifests = append(r.Manifests, Manifest{Source: source, Hooks: hooks, Kind: kind, Name: name, YAML: doc, Object: obj})
	return nil
}

// ReadValues reads a values file as `helm -f FILE` does.
func ReadValues(file string) (map[string]any, error) {
	return chartutil.ReadValuesFile(file)
}

// Kinds returns "Kind/name" for each manifest, sorted.
func (r *Rendered) Kinds() []string {
	var out []string
	for _, m := range r.Manifests {
		out = append(out, m.Kind+"/"+m.Name)
	}
	sort.Strings(out)
	return out
}

// One returns the only manifest of kind, or an error when there are none or several.
func (r *Rendered) One(kind string) (Manifest, error) {
	var found []Manifest
	for _, m := range r.Manifests {
		if m.Kind == kind {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return Manifest{}, fmt.Errorf("check: %d %s objects rendered, want 1 (%v)", len(found), kind, r.Kinds())
	}
	return found[0], nil
}
