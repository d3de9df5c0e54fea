package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"sigs.k8s.io/yaml"

	"github.com/cluster-io/cluster/test/harness"
)

var (
	helmCharts       = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}
	helmChartConfigs = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmchartconfigs"}
)

// demoChart is a chart archive with one ConfigMap that shows its values.
func demoChart(t *testing.T, name string) []byte {
	t.Helper()
	files := map[string]string{
		name + "/Chart.yaml":  "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\n",
		name + "/values.yaml": "greeting: default\ncolor: none\nreplicas: 1\n",
		name + "/templates/cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-out
data:
  greeting: {{ .Values.greeting | quote }}
  color: {{ .Values.color | quote }}
  replicas: {{ .Values.replicas | quote }}
  revision: {{ .Release.Revision | quote }}
`,
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range []string{name + "/Chart.yaml", name + "/values.yaml", name + "/templates/cm.yaml"} {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testHelmCharts: HelmChart and HelmChartConfig, installed by the server's
// in-process helm (no job pod: this server has no node at all).
func testHelmCharts(t *testing.T, s *server, c *kubernetes.Clientset) {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	create := func(gvr schema.GroupVersionResource, text string) {
		t.Helper()
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(text), &obj.Object); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, time.Minute, "create "+obj.GetName(), func() error { // the CRDs may still be settling
			_, err := dyn.Resource(gvr).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{})
			return err
		})
	}
	configMap := func(ns, name string, want map[string]string) func() error {
		return func() error {
			cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for k, v := range want {
				if cm.Data[k] != v {
					return fmt.Errorf("%s = %q, want %q (all: %v)", k, cm.Data[k], v, cm.Data)
				}
			}
			return nil
		}
	}
	condition := func(name, typ string) (string, string) {
		obj, err := dyn.Resource(helmCharts).Namespace("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, c := range conds {
			m := c.(map[string]any)
			if m["type"] == typ {
				msg, _ := m["message"].(string)
				return m["status"].(string), msg
			}
		}
		return "", "no condition " + typ
	}
	gone := func(what string, get func() error) func() error {
		return func() error {
			if err := get(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s still there (%v)", what, err)
			}
			return nil
		}
	}

	t.Run("an inline chart is installed with its values", func(t *testing.T) {
		create(helmCharts, `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: demo, namespace: kube-system}
spec:
  targetNamespace: apps
  createNamespace: true
  chartContent: `+base64.StdEncoding.EncodeToString(demoChart(t, "demo"))+`
  valuesContent: |
    greeting: hello
    color: red
  set:
    replicas: 3
`)
		harness.WaitFor(t, 2*time.Minute, "the release's ConfigMap", configMap("apps", "demo-out",
			map[string]string{"greeting": "hello", "color": "red", "replicas": "3", "revision": "1"}))
		harness.WaitFor(t, time.Minute, "status Deployed", func() error {
			if st, msg := condition("demo", "Deployed"); st != "True" || !strings.Contains(msg, "revision 1, chart demo-0.1.0") {
				return fmt.Errorf("Deployed %s: %s", st, msg)
			}
			return nil
		})
	})
	t.Run("a HelmChartConfig's values win, and the release is upgraded", func(t *testing.T) {
		create(helmChartConfigs, `apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata: {name: demo, namespace: kube-system}
spec:
  valuesContent: "color: blue"
`)
		harness.WaitFor(t, 2*time.Minute, "the upgraded ConfigMap", configMap("apps", "demo-out",
			map[string]string{"greeting": "hello", "color": "blue", "replicas": "3", "revision": "2"}))
		// Nothing changed since: no third revision at the next resync.
		time.Sleep(3 * time.Second)
		if err := configMap("apps", "demo-out", map[string]string{"revision": "2"})(); err != nil {
			t.Error(err)
		}
	})
	t.Run("a chart from the static charts folder, through the manifests folder", func(t *testing.T) {
		static := filepath.Join(s.dataDir, "server", "static", "charts")
		if err := os.WriteFile(filepath.Join(static, "local-demo-0.1.0.tgz"), demoChart(t, "local-demo"), 0o600); err != nil {
			t.Fatal(err)
		}
		manifest := filepath.Join(s.dataDir, "server", "manifests", "static-demo.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: static-demo, namespace: kube-system}
spec:
  chart: https://%{KUBERNETES_API}%/static/charts/local-demo-0.1.0.tgz
  targetNamespace: default
`), 0o600); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "the static chart's ConfigMap", configMap("default", "static-demo-out", map[string]string{"greeting": "default"}))
		if err := os.Remove(manifest); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "uninstalled with its manifest", gone("ConfigMap default/static-demo-out", func() error {
			_, err := c.CoreV1().ConfigMaps("default").Get(ctx, "static-demo-out", metav1.GetOptions{})
			return err
		}))
	})
	t.Run("a chart from a repository, by name and version", func(t *testing.T) {
		// A chart repository on this machine's loopback: nothing leaves it.
		archive := demoChart(t, "repo-demo")
		mux := http.NewServeMux()
		repo := httptest.NewServer(mux)
		defer repo.Close()
		mux.HandleFunc("/index.yaml", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, `apiVersion: v1
entries:
  repo-demo:
  - {apiVersion: v2, name: repo-demo, version: 0.1.0, urls: [%s/repo-demo-0.1.0.tgz]}
`, repo.URL)
		})
		mux.HandleFunc("/repo-demo-0.1.0.tgz", func(w http.ResponseWriter, _ *http.Request) { w.Write(archive) })
		create(helmCharts, `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: from-repo, namespace: kube-system}
spec:
  repo: `+repo.URL+`
  chart: repo-demo
  version: 0.1.0
  targetNamespace: default
  valuesContent: "greeting: from a repo"
`)
		harness.WaitFor(t, 2*time.Minute, "the repo chart's ConfigMap", configMap("default", "from-repo-out", map[string]string{"greeting": "from a repo"}))
		if err := dyn.Resource(helmCharts).Namespace("kube-system").Delete(ctx, "from-repo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, time.Minute, "from-repo uninstalled", gone("ConfigMap default/from-repo-out", func() error {
			_, err := c.CoreV1().ConfigMaps("default").Get(ctx, "from-repo-out", metav1.GetOptions{})
			return err
		}))
	})
	t.Run("a broken chart is reported in the status", func(t *testing.T) {
		create(helmCharts, `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: broken, namespace: kube-system}
spec:
  chartContent: bm90IGEgY2hhcnQ=
`)
		harness.WaitFor(t, time.Minute, "status Failed", func() error {
			if st, msg := condition("broken", "Failed"); st != "True" || !strings.Contains(msg, "not a chart archive") {
				return fmt.Errorf("Failed %s: %s", st, msg)
			}
			return nil
		})
		if err := dyn.Resource(helmCharts).Namespace("kube-system").Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, time.Minute, "broken HelmChart deleted", gone("HelmChart broken", func() error {
			_, err := dyn.Resource(helmCharts).Namespace("kube-system").Get(ctx, "broken", metav1.GetOptions{})
			return err
		}))
	})
	t.Run("deleting the HelmChart uninstalls the release", func(t *testing.T) {
		if err := dyn.Resource(helmCharts).Namespace("kube-system").Delete(ctx, "demo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "release uninstalled", func() error {
			if err := gone("ConfigMap apps/demo-out", func() error {
				_, err := c.CoreV1().ConfigMaps("apps").Get(ctx, "demo-out", metav1.GetOptions{})
				return err
			})(); err != nil {
				return err
			}
			secrets, err := c.CoreV1().Secrets("apps").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=demo"})
			if err != nil || len(secrets.Items) != 0 {
				return fmt.Errorf("release records left: %v %d", err, len(secrets.Items))
			}
			return gone("HelmChart demo", func() error {
				_, err := dyn.Resource(helmCharts).Namespace("kube-system").Get(ctx, "demo", metav1.GetOptions{})
				return err
			})()
		})
	})
}
