package integration

import (
	"context"
	"fmt"
	"github.com/cluster-io/cluster/test/harness"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const ns = "restart-test"

func createObjects(t *testing.T, c *kubernetes.Clientset) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"i": fmt.Sprint(i)}}
		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "test/web:1"}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The last acknowledged write before the crash: it must survive too.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "last-write"}, Data: map[string]string{"v": "acked"}}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func checkObjects(t *testing.T, c *kubernetes.Clientset) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace lost: %v", err)
	}
	for i := range 5 {
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, fmt.Sprintf("cm-%d", i), metav1.GetOptions{})
		if err != nil || cm.Data["i"] != fmt.Sprint(i) {
			t.Errorf("configmap cm-%d lost or changed: %v %v", i, err, cm)
		}
	}
	if cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "last-write", metav1.GetOptions{}); err != nil || cm.Data["v"] != "acked" {
		t.Errorf("last acknowledged write lost: %v", err)
	}
	d, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 3 {
		t.Errorf("deployment lost: %v", err)
	}
}

// bootstrapRole is one of upstream's bootstrap cluster roles that nothing in
// these tests uses.
const bootstrapRole = "system:heapster"

// checkBootstrapped: the apiserver's bootstrap hooks (embedded/bootstraphooks.go
// runs them in place of upstream's) made the RBAC policy and the system
// priority classes, and /readyz lists them under upstream's names.
func checkBootstrapped(t *testing.T, c *kubernetes.Clientset) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.RbacV1().ClusterRoles().Get(ctx, bootstrapRole, metav1.GetOptions{}); err != nil {
		t.Errorf("bootstrap cluster role %s not made again at the restart: %v", bootstrapRole, err)
	}
	for _, pc := range []string{"system-node-critical", "system-cluster-critical"} {
		if _, err := c.SchedulingV1().PriorityClasses().Get(ctx, pc, metav1.GetOptions{}); err != nil {
			t.Errorf("priority class %s: %v", pc, err)
		}
	}
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "").DoRaw(ctx)
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	for _, hook := range []string{"rbac/bootstrap-roles", "scheduling/bootstrap-system-priority-classes"} {
		if line := "[+]poststarthook/" + hook + " ok"; !strings.Contains(string(body), line) {
			t.Errorf("readyz lacks %q:\n%s", line, body)
		}
	}
}

func TestRestartKeepsObjects(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := newServer(t)
			s.start()
			c, err := s.client()
			if err != nil {
				t.Fatal(err)
			}
			createObjects(t, c)
			// A bootstrap role the apiserver must make again at its restart.
			if err := c.RbacV1().ClusterRoles().Delete(context.Background(), bootstrapRole, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete cluster role %s: %v", bootstrapRole, err)
			}
			caBefore, err := os.ReadFile(filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			took := s.stop(sig)
			t.Logf("stopped by %v in %s", sig, took)
			if sig == syscall.SIGTERM {
				log := s.log.String()
				// Reverse start order: scheduler, controller-manager, apiserver, then kine.
				order := []string{"stopped kube-scheduler", "stopped kube-controller-manager", "stopped kube-apiserver", "stopped kine"}
				last := -1
				for _, o := range order {
					i := strings.Index(log, o)
					if i < last {
						t.Errorf("%q logged out of order (or missing)\n%s", o, harness.Tail(log, 60))
					}
					last = i
				}
			}

			s.start()
			c, err = s.client()
			if err != nil {
				t.Fatal(err)
			}
			checkObjects(t, c)
			checkBootstrapped(t, c)
			caAfter, _ := os.ReadFile(filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"))
			if string(caAfter) != string(caBefore) {
				t.Error("server CA changed across restart")
			}
			s.stop(syscall.SIGTERM)
		})
	}
}
