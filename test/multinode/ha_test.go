package multinode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cluster-io/cluster/test/harness"
)

// Two servers on one PostgreSQL database (on the machine's end of the test
// bridge) and an agent that was only told about the first: the agent's
// load balancer learns the second from the kubernetes endpoints, and when
// the first server stops, the agent's node stays Ready and new pods run on
// it, scheduled by the second server's scheduler.
func TestTwoServersOneDatabase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CI runs as root): it runs nodes in network namespaces")
	}
	c := newCluster(t)
	s1Host := c.hosts.AddHost("s1")
	s2Host := c.hosts.AddHost("s2")
	aHost := c.hosts.AddHost("a")
	pgPort := harness.StartPostgres(t, "10.99.0.1")
	dsn := fmt.Sprintf("postgres://postgres@10.99.0.1:%d/postgres?sslmode=disable", pgPort)
	common := []string{"--config", c.emptyConfig(), "--datastore-endpoint", dsn}

	s1 := c.start(s1Host, append([]string{"server", "--data-dir", c.data("server-1", s1Host), "--node-name", "server-1",
		"--write-kubeconfig", filepath.Join(c.dir, "admin.yaml")}, common...)...)
	s1.waitLog("started in", 3*time.Minute)
	tokenFile := filepath.Join(c.data("server-1", s1Host), "server", "token")
	s2Args := append([]string{"server", "--data-dir", c.data("server-2", s2Host), "--node-name", "server-2",
		"--token-file", tokenFile, "--write-kubeconfig", filepath.Join(c.dir, "admin-2.yaml")}, common...)
	s2 := c.start(s2Host, s2Args...)
	s2.waitLog("started in", 3*time.Minute)
	a := c.start(aHost, "agent", "--server", "https://"+s1Host.IP+":6443", "--token-file", tokenFile,
		"--data-dir", c.data("agent", aHost), "--config", c.emptyConfig(), "--node-name", "agent")
	k := client(t, c.hostKubeconfig(s1Host))
	harness.WaitFor(t, 3*time.Minute, "3 nodes Ready", func() error { return nodesReady(k, 3) })

	t.Run("the kubernetes endpoints name both servers, and the agent knows both", func(t *testing.T) {
		want := []string{s1Host.IP, s2Host.IP}
		harness.WaitFor(t, time.Minute, "both servers in the kubernetes EndpointSlice", func() error {
			ep, err := k.CoreV1().Endpoints("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var got []string
			for _, s := range ep.Subsets {
				for _, a := range s.Addresses {
					got = append(got, a.IP)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("endpoints %v, want %v", got, want)
			}
			return nil
		})
		a.waitLog(s2Host.IP+":6443", time.Minute)
	})
	t.Run("each server serves metrics with an endpoint of its own", func(t *testing.T) {
		harness.WaitFor(t, time.Minute, "two metrics-server EndpointSlices, one per server", func() error {
			list, err := k.DiscoveryV1().EndpointSlices("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=metrics-server"})
			if err != nil {
				return err
			}
			var got []string
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					got = append(got, e.Addresses...)
				}
			}
			sort.Strings(got)
			if want := []string{s1Host.IP, s2Host.IP}; !slices.Equal(got, want) {
				return fmt.Errorf("metrics-server endpoints %v, want %v", got, want)
			}
			return nil
		})
	})

	s1.stop()
	s1Stopped := time.Now()
	k2 := client(t, c.hostKubeconfig(s2Host))
	t.Run("with the first server gone, the agent's node stays Ready and runs new pods", func(t *testing.T) {
		// Its kubelet renews the node lease through the second server (a
		// node that lost its server would not, and turn NotReady).
		harness.WaitFor(t, 70*time.Second, "the agent's lease renewed after the first server stopped", func() error {
			l, err := k2.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), "agent", metav1.GetOptions{})
			if err != nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(s1Stopped) {
				return fmt.Errorf("not renewed since %s: %v", s1Stopped.Format(time.TimeOnly), err)
			}
			return nil
		})
		n, err := k2.CoreV1().Nodes().Get(context.Background(), "agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
				t.Fatalf("agent node %s since %s: %s", cond.Status, cond.LastTransitionTime, cond.Message)
			}
		}
		d := harness.WebDeployment("after-s1", testImage, 1)
		d.Spec.Template.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "agent"}
		if _, err := k2.AppsV1().Deployments("default").Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "a pod on the agent, via the second server", func() error {
			pods, err := k2.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=after-s1"})
			if err != nil {
				return err
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == "agent" {
					return nil
				}
			}
			return fmt.Errorf("%d pods, none running on the agent", len(pods.Items))
		})
	})
	t.Run("kubectl top through the second server alone", func(t *testing.T) {
		harness.WaitFor(t, 3*time.Minute, "metrics for the agent via server-2", func() error {
			out, err := c.kubectl(c.hostKubeconfig(s2Host), "top", "nodes", "--no-headers")
			if err != nil || !strings.Contains(out, "agent ") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})
	if a.hasExited() || s2.hasExited() {
		t.Errorf("a process exited: agent %v, server-2 %v\n%s", a.hasExited(), s2.hasExited(), harness.Tail(s2.log.String(), 30))
	}
}
