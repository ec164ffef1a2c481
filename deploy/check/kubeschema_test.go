package check

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/yannh/kubeconform/pkg/validator"
)

var schemas struct {
	once sync.Once
	dir  string
	n    int
	err  error
}

// TestMain removes the schemas and the binary the tests write.
func TestMain(m *testing.M) {
	code := m.Run()
	if schemas.dir != "" {
		os.RemoveAll(schemas.dir)
	}
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// kubeValidator returns a kubeconform validator over schemas made once per
// run from Kubernetes' OpenAPI document.
func kubeValidator(t *testing.T) validator.Validator {
	t.Helper()
	schemas.once.Do(func() {
		var openapi []byte
		if openapi, schemas.err = KubernetesOpenAPI(context.Background()); schemas.err != nil {
			return
		}
		if schemas.dir, schemas.err = os.MkdirTemp("", "haldir-kube-schemas-"); schemas.err != nil {
			return
		}
		schemas.n, schemas.err = WriteSchemas(openapi, schemas.dir)
	})
	if schemas.err != nil {
		t.Fatal(schemas.err)
	}
	if schemas.n < 100 {
		t.Fatalf("only %d schemas written from %s", schemas.n, KubernetesModule)
	}
	v, err := NewValidator(schemas.dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// validate returns kubeconform's verdict on one YAML document: nil when
// valid, else its error and every validation error it lists.
func validate(t *testing.T, v validator.Validator, name, doc string) (status validator.Status, msg string) {
	t.Helper()
	res := v.Validate(name, io.NopCloser(strings.NewReader(doc)))
	if len(res) != 1 {
		t.Fatalf("%s: kubeconform returned %d results for one document", name, len(res))
	}
	r := res[0]
	var b strings.Builder
	if r.Err != nil {
		b.WriteString(r.Err.Error())
	}
	for _, ve := range r.ValidationErrors {
		b.WriteString("\n  " + ve.Path + ": " + ve.Msg)
	}
	return r.Status, b.String()
}

// TestKubeconformChart validates every object the chart renders, hooks
// included, for each value set that renders.
func TestKubeconformChart(t *testing.T) {
	v := kubeValidator(t)
	for _, vs := range valueSets {
		if !vs.render {
			continue
		}
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.file)
			for _, m := range r.Manifests {
				status, msg := validate(t, v, m.Source, m.YAML)
				if status != validator.Valid {
					t.Errorf("%s %s/%s: kubeconform status %d: %s", m.Source, m.Kind, m.Name, status, msg)
					continue
				}
				t.Logf("%s/%s valid", m.Kind, m.Name)
			}
		})
	}
}

const goodDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe
  labels:
    app: probe
spec:
  replicas: 2
  selector:
    matchLabels:
      app: probe
  template:
    metadata:
      labels:
        app: probe
    spec:
      containers:
        - name: probe
          image: haldir:dev
          ports:
            - containerPort: 8000
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 1
`

// TestKubeconformRejects proves the validation can fail: a known-good
// Deployment passes, and each broken variant of it is refused.
func TestKubeconformRejects(t *testing.T) {
	v := kubeValidator(t)
	if status, msg := validate(t, v, "good", goodDeployment); status != validator.Valid {
		t.Fatalf("the known-good Deployment is refused (%d): %s", status, msg)
	}
	for _, c := range []struct {
		name, from, to string
		status         validator.Status
		mention        string
	}{
		{"replicas as a string", "replicas: 2", `replicas: "two"`, validator.Invalid, "/spec/replicas"},
		{"a misspelt field", "replicas: 2", "replica: 2", validator.Invalid, "replica"},
		{"no selector", "  selector:\n    matchLabels:\n      app: probe\n", "", validator.Invalid, "selector"},
		{"containerPort as a string", "containerPort: 8000", "containerPort: http", validator.Invalid, "containerPort"},
		{"a label that is a number", "    app: probe\nspec:", "    app: 7\nspec:", validator.Invalid, "/metadata/labels/app"},
		{"a probe port that is neither a name nor a number", "port: http", "port: [8000]", validator.Invalid, "port"},
		{"a container without a name", "- name: probe\n          image", "- image", validator.Invalid, "name"},
		{"a wrong apiVersion for the kind", "apiVersion: apps/v1", "apiVersion: apps/v1beta9", validator.Error, "could not find schema"},
		{"a kind Kubernetes does not have", "kind: Deployment", "kind: Deploymint", validator.Error, "could not find schema"},
		{"a duplicate key", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", validator.Error, "replicas"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(goodDeployment, c.from) {
				t.Fatalf("the test is wrong: %q is not in the Deployment", c.from)
			}
			bad := strings.Replace(goodDeployment, c.from, c.to, 1)
			status, msg := validate(t, v, c.name, bad)
			if status != c.status || !strings.Contains(msg, c.mention) {
				t.Fatalf("kubeconform status %d (%s), want %d mentioning %q", status, msg, c.status, c.mention)
			}
			t.Logf("refused, as it should be: %s", strings.ReplaceAll(msg, "\n", " "))
		})
	}
}

// TestSchemaFiles checks the schema files are named as kubeconform asks for them.
func TestSchemaFiles(t *testing.T) {
	kubeValidator(t)
	for _, f := range []string{
		"deployment-apps-v1.json", "service-v1.json", "secret-v1.json", "job-batch-v1.json",
		"poddisruptionbudget-policy-v1.json", "horizontalpodautoscaler-autoscaling-v2.json",
	} {
		if _, err := os.Stat(filepath.Join(schemas.dir, f)); err != nil {
			t.Error(err)
		}
	}
}
