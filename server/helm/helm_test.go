package helm

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

func TestStaticChart(t *testing.T) {
	for _, tc := range []struct {
		ref, file string
		ok        bool
	}{
		{"https://%{KUBERNETES_API}%/static/charts/traefik-1.0.0.tgz", "traefik-1.0.0.tgz", true},
		{"https://10.0.0.1:6443/static/charts/a.tgz", "a.tgz", true},
		{"https://%{KUBERNETES_API}%/static/charts/../../token", "", false},
		{"https://%{KUBERNETES_API}%/static/charts/sub/a.tgz", "", false},
		{"http://x/static/charts/a.tgz", "", false},
		{"traefik", "", false},
		{"oci://registry/charts/a", "", false},
	} {
		file, ok := staticChart(tc.ref)
		if file != tc.file || ok != tc.ok {
			t.Errorf("staticChart(%q) = %q, %v; want %q, %v", tc.ref, file, ok, tc.file, tc.ok)
		}
	}
}

// Values: HelmChart valuesContent, values, valuesSecrets; then the
// HelmChartConfig's, each over the one before (deep merge); set last.
func TestValuesOrder(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "extra", Namespace: "kube-system"},
		Data:       map[string][]byte{"a.yaml": []byte("fromSecret: yes\nimage: {tag: v3}\n")},
	})
	c := &Controller{client: cs}
	hc := &HelmChart{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "kube-system"}, Spec: HelmChartSpec{
		ValuesContent: "image: {repo: a, tag: v1}\nkeep: 1\nlist: [1, 2]\n",
		Values:        &apiextensionsv1.JSON{Raw: []byte(`{"image":{"tag":"v2"}}`)},
		ValuesSecrets: []SecretSpec{{Name: "extra"}},
		Set: map[string]intstr.IntOrString{
			"replicas": intstr.FromInt32(3),
			"debug":    intstr.FromString("true"),
			"hosts":    intstr.FromString("a,b"),
		},
	}}
	hcc := &HelmChartConfig{Spec: HelmChartConfigSpec{ValuesContent: "image: {repo: b}\nlist: [3]\n"}}
	vals, err := c.values(context.Background(), hc, hcc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(vals)
	want := `{"debug":true,"fromSecret":true,"hosts":"a,b","image":{"repo":"b","tag":"v3"},"keep":1,"list":[3],"replicas":3}`
	if string(got) != want {
		t.Errorf("values\n got %s\nwant %s", got, want)
	}
	hc.Spec.ValuesSecrets = []SecretSpec{{Name: "missing"}}
	if _, err := c.values(context.Background(), hc, nil); err == nil {
		t.Error("a missing values Secret was not reported")
	}
}

func TestDigestFollowsValues(t *testing.T) {
	a, _ := digest("src", map[string]any{"a": 1}, "ns", false)
	b, _ := digest("src", map[string]any{"a": 2}, "ns", false)
	a2, _ := digest("src", map[string]any{"a": 1}, "ns", false)
	if a == b || a != a2 || len(a) > 63 {
		t.Errorf("digests %s %s %s", a, b, a2)
	}
}
