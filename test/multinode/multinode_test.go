// Package multinode is the agent acceptance test: one server and two agents
// on this machine, each on a test host of its own (network and mount
// namespaces, harness.Network) with its own data dir, so that flannel's
// VXLAN really carries the pod traffic between them. It needs root.
package multinode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cluster-io/cluster/test/harness"
)

const testImage = "localhost/test/webapp:v1"

// proc is one `cluster server` or `cluster agent` on a test host.
type proc struct {
	t      *testing.T
	host   *harness.Host
	args   []string
	cmd    *exec.Cmd
	log    *harness.SyncBuffer
	exited chan error
}

type cluster struct {
	t       *testing.T
	bin     string
	dir     string
	images  string
	hosts   *harness.Network
	dataDir map[string]*harness.Host // every data dir a node ran in, for cleanup
}

func TestServerAndTwoAgents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CI runs as root): it runs nodes in network namespaces")
	}
	c := newCluster(t)
	srvHost := c.hosts.AddHost("srv")
	a1Host := c.hosts.AddHost("a1")
	a2Host := c.hosts.AddHost("a2")
	// Agents that must be refused run on a host of their own: on a node's
	// host, the checks at start would refuse them first (ports in use).
	xHost := c.hosts.AddHost("x")
	// The nodes' "outside" resolver: a test DNS server on the machine's end
	// of the bridge, passed with --resolv-conf (CoreDNS forwards to it).
	outside := harness.StartDNS(t, "10.99.0.1", map[string]string{"www.example.test": "10.99.0.77"})
	resolvConf := filepath.Join(c.dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 10.99.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	srvArgs := []string{"server", "--data-dir", c.data("server", srvHost), "--config", c.emptyConfig(),
		"--node-name", "server", "--write-kubeconfig", filepath.Join(c.dir, "admin.yaml"), "--agent-token", "agents-only", "--resolv-conf", resolvConf}
	srv := c.start(srvHost, srvArgs...)
	srv.waitLog("started in", 3*time.Minute)
	kubeconfig := c.hostKubeconfig(srvHost)
	k := client(t, kubeconfig)
	serverURL := "https://" + srvHost.IP + ":6443"
	tokenFile := filepath.Join(c.data("server", srvHost), "server", "token")
	serverToken := strings.TrimSpace(string(must(os.ReadFile(tokenFile))))

	// Refusals first: each stops with one Error line and registers nothing.
	wrongCA := "K10" + strings.Repeat("ab", 32) + "::server:" + serverToken[strings.LastIndex(serverToken, ":")+1:]
	expiring := c.clusterCmd(kubeconfig, "token", "create", "--ttl", "1s")
	time.Sleep(1500 * time.Millisecond)
	for _, tc := range []struct{ name, token, want string }{
		{"wrong secret", serverToken[:strings.LastIndex(serverToken, ":")+1] + "wrong", "the token's secret is not valid for this cluster"},
		{"CA hash mismatch", wrongCA, "is not the one the token names"},
		{"expired bootstrap token", expiring, "unknown, deleted or expired"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			c.refused(t, xHost, tc.want, "--server", serverURL, "--token", tc.token, "--node-name", "refused")
		})
	}
	t.Run("unreachable server is waited for", func(t *testing.T) {
		p := c.start(xHost, "agent", "--server", "https://"+srvHost.IP+":1", "--token", serverToken,
			"--data-dir", c.data("unreachable", xHost), "--config", c.emptyConfig(), "--node-name", "waiting")
		p.waitLog("waiting for server https://"+srvHost.IP+":1", time.Minute)
		p.stop()
	})

	begin := time.Now()
	a1 := c.start(a1Host, "agent", "--server", serverURL, "--token-file", tokenFile,
		"--data-dir", c.data("agent-1", a1Host), "--config", c.emptyConfig(), "--node-name", "agent-1", "--node-label", "tier=edge",
		"--kube-proxy-arg", "proxy-mode=nftables", "--resolv-conf", resolvConf) // the server and agent-2 use iptables mode
	bootstrap := c.clusterCmd(kubeconfig, "token", "create", "--description", "for-agent-2")
	bootstrapID := bootstrap[strings.LastIndex(bootstrap, ":")+1:][:6]
	if list := c.clusterCmd(kubeconfig, "token", "list"); !strings.Contains(list, bootstrapID) || !strings.Contains(list, "for-agent-2") || strings.Contains(list, bootstrap[len(bootstrap)-16:]) {
		t.Errorf("cluster token list shows no %s (or shows its secret):\n%s", bootstrapID, list)
	}
	a2Args := []string{"agent", "--server", serverURL, "--token", bootstrap,
		"--data-dir", c.data("agent-2", a2Host), "--config", c.emptyConfig(), "--node-name", "agent-2", "--resolv-conf", resolvConf}
	a2 := c.start(a2Host, a2Args...)
	harness.WaitFor(t, 3*time.Minute, "3 nodes Ready", func() error { return nodesReady(k, 3) })
	t.Logf("agents Ready %.1fs after their start", time.Since(begin).Seconds())
	if n := must(k.CoreV1().Nodes().Get(context.Background(), "agent-1", metav1.GetOptions{})); n.Status.Addresses[0].Address != a1Host.IP || n.Labels["tier"] != "edge" {
		t.Errorf("agent-1 registered with %v and labels %v, want InternalIP %s (its default-route address) and tier=edge", n.Status.Addresses, n.Labels, a1Host.IP)
	}

	t.Run("refused: deleted bootstrap token", func(t *testing.T) {
		c.clusterCmd(kubeconfig, "token", "delete", bootstrapID)
		if list := c.clusterCmd(kubeconfig, "token", "list"); strings.Contains(list, bootstrapID) {
			t.Errorf("deleted token still listed:\n%s", list)
		}
		c.refused(t, xHost, "unknown, deleted or expired", "--server", serverURL, "--token", bootstrap, "--node-name", "refused")
	})
	t.Run("refused: node name taken", func(t *testing.T) {
		c.refused(t, xHost, `node name "agent-1" is taken by another node`, "--server", serverURL, "--token", serverToken, "--node-name", "agent-1")
	})
	t.Run("refusals registered nothing", func(t *testing.T) {
		if err := nodesReady(k, 3); err != nil {
			t.Error(err)
		}
		for _, name := range []string{"refused", "waiting"} {
			if _, err := k.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("node %s: %v, want NotFound", name, err)
			}
		}
		secrets := must(k.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{}))
		for _, s := range secrets.Items {
			if strings.HasPrefix(s.Name, "refused.") {
				t.Errorf("a refused agent left %s", s.Name)
			}
		}
	})

	// A workload spread over the three nodes, behind a NodePort Service.
	pods, svc := deployWeb(t, k)
	nodeOf := map[string]corev1.Pod{}
	for _, p := range pods {
		nodeOf[p.Spec.NodeName] = p
	}
	if len(nodeOf) != 3 {
		t.Fatalf("pods not spread over 3 nodes: %v", nodeOf)
	}

	t.Run("pod to pod across nodes", func(t *testing.T) {
		for _, from := range pods {
			for _, to := range pods {
				if from.Name == to.Name {
					continue
				}
				out, err := c.kubectl(kubeconfig, "exec", from.Name, "--", "/webapp", "get", "http://"+to.Status.PodIP+":8080/")
				if err != nil || strings.TrimSpace(out) != "hello from "+to.Name {
					t.Errorf("%s (%s) → %s (%s): %v %q", from.Name, from.Spec.NodeName, to.Name, to.Spec.NodeName, err, out)
				}
			}
		}
	})
	t.Run("ClusterIP from every host", func(t *testing.T) {
		for _, h := range []*harness.Host{srvHost, a1Host, a2Host} {
			seen := map[string]bool{}
			harness.WaitFor(t, time.Minute, "answers from all 3 pods on "+h.Name, func() error {
				out, err := h.Command("curl", "-sf", "-m", "3", "http://"+svc.Spec.ClusterIP+"/").Output()
				if err != nil {
					return fmt.Errorf("curl on %s: %v", h.Name, err)
				}
				seen[strings.TrimSpace(string(out))] = true
				return allSeen(seen, pods)
			})
		}
	})
	t.Run("NodePort on every node IP", func(t *testing.T) {
		port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
		for _, h := range []*harness.Host{srvHost, a1Host, a2Host} {
			harness.WaitFor(t, time.Minute, "NodePort on "+h.IP, func() error {
				body, err := httpGet("http://" + h.IP + ":" + port + "/")
				if err != nil || !strings.HasPrefix(body, "hello from web-") {
					return fmt.Errorf("%v %q", err, body)
				}
				return nil
			})
		}
	})
	lbService := func(name string) *corev1.Service {
		s, err := k.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Port: 8088, TargetPort: intstr.FromInt32(8080)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	lbIngress := func(name string) []string {
		s, err := k.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, i := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, i.IP)
		}
		sort.Strings(ips)
		return ips
	}
	t.Run("a LoadBalancer Service answers on every node IP", func(t *testing.T) {
		lbService("web-lb")
		want := []string{srvHost.IP, a1Host.IP, a2Host.IP}
		sort.Strings(want)
		harness.WaitFor(t, time.Minute, "ingress IPs of web-lb", func() error {
			if got := lbIngress("web-lb"); !slices.Equal(got, want) {
				return fmt.Errorf("ingress %v, want %v", got, want)
			}
			return nil
		})
		for _, ip := range want {
			harness.WaitFor(t, time.Minute, "web-lb on "+ip, func() error {
				body, err := httpGet("http://" + ip + ":8088/")
				if err != nil || !strings.HasPrefix(body, "hello from web-") {
					return fmt.Errorf("%v %q", err, body)
				}
				return nil
			})
		}
		// The port is taken on those addresses: a second one stays pending.
		lbService("web-lb-same-port")
		time.Sleep(5 * time.Second)
		if got := lbIngress("web-lb-same-port"); len(got) != 0 {
			t.Errorf("a second LoadBalancer on port 8088 got %v; it must stay pending", got)
		}
	})
	t.Run("every kube-system pod is Ready", func(t *testing.T) {
		harness.WaitFor(t, 2*time.Minute, "kube-system pods Ready", func() error { return podsReady(k, "kube-system") })
	})
	t.Run("kubectl top nodes and pods", func(t *testing.T) {
		harness.WaitFor(t, 3*time.Minute, "metrics for every node", func() error {
			out, err := c.kubectl(kubeconfig, "top", "nodes", "--no-headers")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, n := range []string{"server", "agent-1", "agent-2"} {
				if !regexp.MustCompile(`(?m)^` + n + `\s+\d+m\s+\d+%\s+\d+Mi`).MatchString(out) {
					return fmt.Errorf("no numbers for %s in:\n%s", n, out)
				}
			}
			return nil
		})
		harness.WaitFor(t, 3*time.Minute, "metrics for the web pods", func() error {
			out, err := c.kubectl(kubeconfig, "top", "pods", "-l", "app=web", "--no-headers")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if n := len(regexp.MustCompile(`(?m)^web-\S+\s+\d+m\s+\d+Mi`).FindAllString(out, -1)); n != 3 {
				return fmt.Errorf("%d of 3 web pods with numbers:\n%s", n, out)
			}
			return nil
		})
	})
	t.Run("a local-path volume keeps its data across pods and goes with its claim", func(t *testing.T) {
		ctx := context.Background()
		const text = "written by the first pod"
		if _, err := k.CoreV1().PersistentVolumeClaims("default").Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data"}, // no class: the default one, local-path
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Mi")}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Run as a user that is not root: the volume must be writable anyway.
		runOnce := func(name string, args ...string) string {
			t.Helper()
			uid := int64(1000)
			if _, err := k.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{
					RestartPolicy:   corev1.RestartPolicyNever,
					NodeSelector:    map[string]string{corev1.LabelHostname: "agent-1"},
					SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid},
					Containers: []corev1.Container{{Name: "c", Image: testImage, ImagePullPolicy: corev1.PullNever,
						Command: append([]string{"/webapp"}, args...), VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
				},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			harness.WaitFor(t, 2*time.Minute, "pod "+name+" done", func() error {
				p, err := k.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if p.Status.Phase == corev1.PodFailed {
					out, _ := c.kubectl(kubeconfig, "logs", name)
					t.Fatalf("pod %s failed: %s", name, out)
				}
				if p.Status.Phase != corev1.PodSucceeded {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			out, err := c.kubectl(kubeconfig, "logs", name)
			if err != nil {
				t.Fatalf("logs %s: %v: %s", name, err, out)
			}
			if err := k.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			harness.WaitFor(t, time.Minute, "pod "+name+" gone", func() error {
				if _, err := k.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("still there (%v)", err)
				}
				return nil
			})
			return out
		}
		runOnce("writer", "write", "/data/note.txt", text)
		pvc := must(k.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{}))
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
			t.Fatalf("claim %s, class %v: want Bound to local-path", pvc.Status.Phase, pvc.Spec.StorageClassName)
		}
		pv := must(k.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{}))
		storage := filepath.Join(c.data("agent-1", a1Host), "storage")
		if pv.Spec.HostPath == nil || filepath.Dir(pv.Spec.HostPath.Path) != storage {
			t.Fatalf("volume %s at %+v, want a directory in agent-1's %s", pv.Name, pv.Spec.PersistentVolumeSource, storage)
		}
		dir := pv.Spec.HostPath.Path
		if b, err := os.ReadFile(filepath.Join(dir, "note.txt")); err != nil || string(b) != text {
			t.Errorf("%s/note.txt on agent-1: %q, %v", dir, b, err)
		}
		if got := runOnce("reader", "cat", "/data/note.txt"); got != text {
			t.Errorf("the second pod read %q, want %q", got, text)
		}
		if err := k.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "volume and its directory removed", func() error {
			if _, err := k.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("PV %s still there (%v)", pv.Name, err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return fmt.Errorf("%s still there (%v)", dir, err)
			}
			return nil
		})
	})
	t.Run("DNS from pods on every node", func(t *testing.T) {
		headless, err := k.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web-headless"},
			Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 8080}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var podIPs []string
		for _, p := range pods {
			podIPs = append(podIPs, p.Status.PodIP)
		}
		sort.Strings(podIPs)
		before := outside.Queries()
		for _, node := range []string{"server", "agent-1", "agent-2"} {
			pod := nodeOf[node].Name
			for name, want := range map[string][]string{
				"kubernetes.default":                         {"10.43.0.1"},
				"web.default.svc.cluster.local":              {svc.Spec.ClusterIP},
				headless.Name + ".default.svc.cluster.local": podIPs,
				"www.example.test":                           {"10.99.0.77"},
			} {
				harness.WaitFor(t, time.Minute, "lookup of "+name+" from a pod on "+node, func() error {
					out, err := c.kubectl(kubeconfig, "exec", pod, "--", "/webapp", "lookup", name)
					if err != nil {
						return fmt.Errorf("%v: %s", err, out)
					}
					got := strings.Fields(out)
					sort.Strings(got)
					if !slices.Equal(got, want) {
						return fmt.Errorf("got %v, want %v", got, want)
					}
					return nil
				})
			}
		}
		if outside.Queries() == before {
			t.Error("the outside name was not resolved through the test's DNS server (--resolv-conf)")
		}
	})
	t.Run("addresses no one serves are refused on the node, and nothing leaves it", func(t *testing.T) {
		unserved := map[string]string{
			"an unused service IP":             "http://10.43.200.200:80/",
			"a service IP on an unused port":   "http://" + svc.Spec.ClusterIP + ":81/",
			"a pod IP in no node's pod subnet": "http://10.42.200.5:8080/",
		}
		// The server's node runs kube-proxy in iptables mode, agent-1's in nftables mode.
		for _, node := range []struct {
			name string
			host *harness.Host
		}{{"server", srvHost}, {"agent-1", a1Host}} {
			for what, url := range unserved {
				begin := time.Now()
				out, err := node.host.Command("curl", "-sS", "-m", "5", url).CombinedOutput()
				if took := time.Since(begin); err == nil || took > time.Second {
					t.Errorf("%s's host → %s (%s): %v after %s, want a refusal within 1s: %s", node.name, what, url, err, took.Round(time.Millisecond), out)
				}
				pod := nodeOf[node.name]
				out2, err := c.kubectl(kubeconfig, "exec", pod.Name, "--", "/webapp", "get", url)
				if err == nil || !refusedFast(out2) {
					t.Errorf("pod on %s → %s (%s): %v, want a refusal within 1s: %s", node.name, what, url, err, out2)
				}
			}
			// A DNS server on an unserved service IP: the lookup is refused
			// at once (UDP gets ICMP port unreachable, every time).
			out, err := c.kubectl(kubeconfig, "exec", nodeOf[node.name].Name, "--", "/webapp", "lookup", "web.default.svc.cluster.local", "10.43.200.53:53")
			if err == nil || !refusedFast(out) || !strings.Contains(out, "connection refused") {
				t.Errorf("DNS lookup from a pod on %s: %v, want 'connection refused' within 1s: %s", node.name, err, out)
			}
			// iptables mode: our chain; nftables mode: our table.
			rules, _ := node.host.Command("iptables", "-w", "-L", "CLUSTER-NOLEAK", "-v", "-x", "-n").CombinedOutput()
			table, _ := node.host.Command("nft", "list", "table", "ip", "cluster-noleak").CombinedOutput()
			rules = append(rules, table...)
			if rejected := rejectedPackets(string(rules)); rejected == 0 {
				t.Errorf("%s: the rejecting rules counted no packet:\n%s", node.name, rules)
			}
		}
		if leaked, err := c.hosts.Leaked(); err != nil || leaked != 0 {
			t.Errorf("%d packets left the nodes for addresses off their network (%v)", leaked, err)
		}
	})
	t.Run("flannel's iptables rules and ours come back when removed", func(t *testing.T) {
		// The server's node (iptables mode): flannel's rules are checked by
		// one listing of each table a minute (agent/flannel/rules.go), ours
		// every 30 s (agent/noleak).
		ours := func() ([]string, error) {
			var lines []string
			for _, table := range []string{"nat", "filter"} {
				out, err := srvHost.Command("iptables", "-w", "5", "-t", table, "-S").Output()
				if err != nil {
					return nil, fmt.Errorf("iptables -t %s -S: %v", table, err)
				}
				for _, l := range strings.Split(string(out), "\n") {
					if strings.Contains(l, "FLANNEL-") || strings.Contains(l, "CLUSTER-NOLEAK") {
						lines = append(lines, table+" "+l)
					}
				}
			}
			return lines, nil
		}
		want, err := ours()
		if err != nil || len(want) < 6 {
			t.Fatalf("flannel's and our rules on the server's node: %v\n%s", err, strings.Join(want, "\n"))
		}
		for _, args := range [][]string{
			{"-t", "nat", "-F", "FLANNEL-POSTRTG"},
			{"-D", "FORWARD", "-m", "comment", "--comment", "cluster: keep cluster addresses on the node", "-j", "CLUSTER-NOLEAK"},
		} {
			if out, err := srvHost.Command("iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables %v: %v: %s", args, err, out)
			}
		}
		harness.WaitFor(t, 100*time.Second, "flannel's and our rules back on the server's node", func() error {
			got, err := ours()
			if err != nil {
				return err
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				return fmt.Errorf("rules now:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			return nil
		})
	})
	t.Run("hairpin and session affinity still work in both proxy modes", func(t *testing.T) {
		sticky, err := k.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web-sticky"},
			Spec: corev1.ServiceSpec{
				Selector:        map[string]string{"app": "web"},
				Ports:           []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
				SessionAffinity: corev1.ServiceAffinityClientIP,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range []struct {
			name string
			host *harness.Host
		}{{"server", srvHost}, {"agent-1", a1Host}} {
			seen := map[string]bool{}
			harness.WaitFor(t, time.Minute, "answers through the ClientIP-affinity service on "+node.name, func() error {
				for i := 0; i < 8; i++ {
					out, err := node.host.Command("curl", "-sf", "-m", "3", "http://"+sticky.Spec.ClusterIP+"/").Output()
					if err != nil {
						return fmt.Errorf("curl: %v", err)
					}
					seen[strings.TrimSpace(string(out))] = true
				}
				return nil
			})
			if len(seen) != 1 {
				t.Errorf("%s's host: session affinity broken, answers from %v", node.name, seen)
			}
			// Hairpin: a pod reaches itself through its own Service.
			self := nodeOf[node.name]
			harness.WaitFor(t, time.Minute, "a pod on "+node.name+" answered by itself through the Service", func() error {
				out, err := c.kubectl(kubeconfig, "exec", self.Name, "--", "/webapp", "get", "http://"+svc.Spec.ClusterIP+"/")
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				if strings.TrimSpace(out) != "hello from "+self.Name {
					return fmt.Errorf("answered by %q", strings.TrimSpace(out))
				}
				return nil
			})
		}
	})
	onAgent := nodeOf["agent-1"]
	t.Run("logs, exec and port-forward on an agent's pod", func(t *testing.T) {
		if out, err := c.kubectl(kubeconfig, "logs", onAgent.Name); err != nil || !strings.Contains(out, "listening on :8080") {
			t.Errorf("kubectl logs %s: %v\n%s", onAgent.Name, err, out)
		}
		if out, err := c.kubectl(kubeconfig, "exec", onAgent.Name, "--", "/webapp", "get", "http://127.0.0.1:8080/"); err != nil || strings.TrimSpace(out) != "hello from "+onAgent.Name {
			t.Errorf("kubectl exec %s: %v\n%s", onAgent.Name, err, out)
		}
		port := strconv.Itoa(harness.FreePort(t))
		pf := exec.Command(c.bin, "kubectl", "--kubeconfig", kubeconfig, "port-forward", "pod/"+onAgent.Name, port+":8080")
		pf.Env = harness.CleanEnv()
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { pf.Process.Kill(); pf.Wait() }()
		harness.WaitFor(t, 30*time.Second, "an answer through port-forward", func() error {
			body, err := httpGet("http://127.0.0.1:" + port + "/")
			if err != nil || strings.TrimSpace(body) != "hello from "+onAgent.Name {
				return fmt.Errorf("%v %q", err, body)
			}
			return nil
		})
	})

	t.Run("agents outlive the server", func(t *testing.T) {
		before := map[string][]string{"agent-1": c.containers("agent-1"), "agent-2": c.containers("agent-2")}
		for name, ids := range before {
			if len(ids) == 0 {
				t.Fatalf("no containers on %s", name)
			}
		}
		srv.stop()
		stopped := time.Now()
		time.Sleep(15 * time.Second)
		for _, a := range []*proc{a1, a2} {
			if a.hasExited() {
				t.Fatalf("agent exited while the server was down:\n%s", harness.Tail(a.log.String(), 40))
			}
		}
		for name, ids := range before {
			if after := c.containers(name); !slices.Equal(after, ids) {
				t.Errorf("%s: containers changed while the server was down: %v → %v", name, ids, after)
			}
		}
		// The data path needs no server: agent-1's host reaches agent-2's pod.
		target := nodeOf["agent-2"]
		if out, err := a1Host.Command("curl", "-sf", "-m", "3", "http://"+target.Status.PodIP+":8080/").Output(); err != nil || strings.TrimSpace(string(out)) != "hello from "+target.Name {
			t.Errorf("pod on agent-2 from agent-1's host with the server down: %v %q", err, out)
		}

		// Back without the service LB: a new LoadBalancer Service stays pending
		// (for another load balancer).
		srv = c.start(srvHost, append(srvArgs, "--disable", "servicelb")...)
		srv.waitLog("started in", 3*time.Minute)
		harness.WaitFor(t, 3*time.Minute, "every node's lease renewed after the restart", func() error { return leasesRenewed(k, stopped) })
		harness.WaitFor(t, time.Minute, "3 nodes Ready again", func() error { return nodesReady(k, 3) })
		for _, a := range []*proc{a1, a2} {
			if a.hasExited() || strings.Count(a.log.String(), "starting cluster") != 1 {
				t.Errorf("an agent restarted instead of reconnecting:\n%s", harness.Tail(a.log.String(), 40))
			}
		}
		for name, ids := range before {
			if after := c.containers(name); !slices.Equal(after, ids) {
				t.Errorf("%s: containers changed across the server's restart: %v → %v", name, ids, after)
			}
		}
		lbService("web-lb-other-lb")
		time.Sleep(5 * time.Second)
		if got := lbIngress("web-lb-other-lb"); len(got) != 0 {
			t.Errorf("with --disable servicelb a LoadBalancer Service got %v; it must stay pending", got)
		}
	})

	t.Run("reinstalled with install.sh and the agent token, a node gets its name back once the old node is deleted", func(t *testing.T) {
		a2.stop()
		c.killAll("agent-2")
		if err := k.CoreV1().Nodes().Delete(context.Background(), "agent-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		agentToken := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(c.data("server", srvHost), "server", "agent-token")))))
		if !strings.HasSuffix(agentToken, "::node:agents-only") {
			t.Errorf("agent token file holds %q", agentToken)
		}
		a2 = c.installAgent(a2Host, serverURL, agentToken,
			"--data-dir "+c.data("agent-2-reinstalled", a2Host)+" --config "+c.emptyConfig()+" --node-name agent-2 --resolv-conf "+resolvConf)
		harness.WaitFor(t, 3*time.Minute, "3 nodes Ready with the reinstalled agent-2", func() error { return nodesReady(k, 3) })
	})
}

// installAgent runs install.sh on host h with CLUSTER_URL and CLUSTER_TOKEN,
// as `curl … | sh` would, into tmpfs over /usr/local/bin and
// /etc/systemd/system of that host, then starts what the unit says with the
// environment file the unit names, as systemd would (none runs here).
func (c *cluster) installAgent(h *harness.Host, url, token, flags string) *proc {
	c.t.Helper()
	installer, _ := filepath.Abs("../../install.sh")
	cmd := h.Command("sh", "-ec", `mount -t tmpfs tmpfs /usr/local/bin
mount -t tmpfs tmpfs /etc/systemd/system
sh "$0"
echo "--- unit"; cat /etc/systemd/system/cluster.service`, installer)
	cmd.Env = append(harness.CleanEnv(), "INSTALL_CLUSTER_SKIP_DOWNLOAD=true", "INSTALL_CLUSTER_BIN_PATH="+c.bin,
		"INSTALL_CLUSTER_SKIP_START=true", "CLUSTER_URL="+url, "CLUSTER_TOKEN="+token, "INSTALL_CLUSTER_EXEC="+flags)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("install.sh: %v\n%s", err, out)
	}
	_, unit, _ := strings.Cut(string(out), "--- unit\n")
	var execStart, envFile string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(line, "EnvironmentFile=-"); ok {
			envFile = v
		}
	}
	if !strings.HasPrefix(execStart, "/usr/local/bin/cluster agent ") || envFile == "" {
		c.t.Fatalf("the unit does not run an agent with an environment file:\n%s", unit)
	}
	return c.startCmd(h, "sh", "-c", "set -a; . "+envFile+"; exec "+execStart)
}

func newCluster(t *testing.T) *cluster {
	bin := os.Getenv("CLUSTER_BIN")
	if bin == "" {
		t.Fatal("CLUSTER_BIN is not set: build with scripts/build and run through scripts/test (the node binaries must be embedded)")
	}
	dir, err := os.MkdirTemp("", "cluster-multinode-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: bin, dir: dir, images: filepath.Join(dir, "images"), dataDir: map[string]*harness.Host{}}
	// Registered before the hosts, so it runs after every node has stopped
	// and before the hosts are removed (cleanups run last-in first-out).
	c.hosts = harness.NewNetwork(t, "clmn", "10.99.0")
	t.Cleanup(c.cleanup)
	cmd := exec.Command("../../scripts/build-test-images", c.images)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build-test-images: %v\n%s", err, out)
	}
	return c
}

// data returns the data dir of a node called name on host h, with the test
// image in its air-gap folder.
func (c *cluster) data(name string, h *harness.Host) string {
	d := filepath.Join(c.dir, name)
	if _, ok := c.dataDir[d]; !ok {
		c.dataDir[d] = h
		images := filepath.Join(d, "agent", "images")
		if err := os.MkdirAll(images, 0o755); err != nil {
			c.t.Fatal(err)
		}
		if err := os.Link(filepath.Join(c.images, "webapp.tar"), filepath.Join(images, "webapp.tar")); err != nil {
			c.t.Fatal(err)
		}
	}
	return d
}

func (c *cluster) emptyConfig() string {
	p := filepath.Join(c.dir, "empty.yaml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// hostKubeconfig is the admin kubeconfig pointed at the server's host
// address instead of its loopback, for the test process.
func (c *cluster) hostKubeconfig(srv *harness.Host) string {
	cfg, err := clientcmd.LoadFromFile(filepath.Join(c.dir, "admin.yaml"))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + srv.IP + ":6443"
	}
	p := filepath.Join(c.dir, "admin-"+srv.Name+".yaml")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// start runs the cluster binary with args on host h.
func (c *cluster) start(h *harness.Host, args ...string) *proc {
	c.t.Helper()
	return c.startCmd(h, c.bin, args...)
}

func (c *cluster) startCmd(h *harness.Host, name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, host: h, args: args, log: &harness.SyncBuffer{}, exited: make(chan error, 1)}
	p.cmd = h.Command(name, args...)
	p.cmd.Env = harness.CleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	c.t.Cleanup(p.stop)
	return p
}

func (p *proc) hasExited() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return true
	default:
		return false
	}
}

func (p *proc) waitLog(want string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(p.log.String(), want) {
		select {
		case err := <-p.exited:
			p.exited <- err
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.args[0], err, want, harness.Tail(p.log.String(), 60))
		case <-deadline:
			p.t.Fatalf("%s did not log %q within %s:\n%s", p.args[0], want, timeout, harness.Tail(p.log.String(), 60))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits; it may be called more than once.
func (p *proc) stop() {
	if p.hasExited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			p.t.Errorf("%s exited with %v after SIGTERM:\n%s", p.args[0], err, harness.Tail(p.log.String(), 40))
		}
	case <-time.After(90 * time.Second):
		p.cmd.Process.Kill()
		// The supervisor's lines say which component's Stop hung; the
		// last lines are usually a daemon's retries.
		var steps []string
		for _, l := range strings.Split(p.log.String(), "\n") {
			if strings.Contains(l, "[supervisor]") {
				steps = append(steps, l)
			}
		}
		p.t.Errorf("%s did not stop within 90s; supervisor:\n%s\nlast lines:\n%s", p.args[0],
			harness.Tail(strings.Join(steps, "\n"), 25), harness.Tail(p.log.String(), 40))
	}
	if p.t.Failed() {
		p.t.Logf("%s %v log:\n%s", p.host.Name, p.args[:1], harness.Tail(p.log.String(), 60))
	}
}

// refused runs an agent that must stop at once with exit code 1 and one
// Error line containing want.
func (c *cluster) refused(t *testing.T, h *harness.Host, want string, args ...string) {
	t.Helper()
	dir := filepath.Join(c.dir, fmt.Sprintf("refused-%d", time.Now().UnixNano()))
	cmd := h.Command(c.bin, append([]string{"agent", "--data-dir", dir, "--config", c.emptyConfig(), "--lb-server-port", "6555"}, args...)...)
	cmd.Env = harness.CleanEnv()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("agent did not stop within 1m; it should have been refused:\n%s", harness.Tail(string(out), 30))
	}
	var errLines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error:") {
			errLines = append(errLines, l)
		}
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || len(errLines) != 1 || !strings.Contains(errLines[0], want) {
		t.Errorf("want exit code 1 and one Error line with %q; got %v:\n%s", want, err, harness.Tail(string(out), 20))
	}
}

// clusterCmd runs `cluster ARGS --kubeconfig K` in the test process and
// returns its trimmed output.
func (c *cluster) clusterCmd(kubeconfig string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, append(args, "--kubeconfig", kubeconfig)...)
	cmd.Env = harness.CleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("cluster %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (c *cluster) kubectl(kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(c.bin, append([]string{"kubectl", "--kubeconfig", kubeconfig, "--request-timeout", "20s"}, args...)...)
	cmd.Env = harness.CleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// containers lists the running container IDs of a node, through its
// containerd (whose socket is a file in its data dir).
func (c *cluster) containers(node string) []string {
	c.t.Helper()
	cmd := exec.Command(c.bin, "crictl", "ps", "-q")
	cmd.Env = append(harness.CleanEnv(), "CLUSTER_DATA_DIR="+filepath.Join(c.dir, node))
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("crictl ps on %s: %v", node, err)
	}
	ids := strings.Fields(string(out))
	sort.Strings(ids)
	return ids
}

// killAll runs a node's kill-all script on its host.
func (c *cluster) killAll(node string) {
	d := filepath.Join(c.dir, node)
	h := c.dataDir[d]
	killall := filepath.Join(d, "data", "current", "bin", "cluster-killall.sh")
	if _, err := os.Stat(killall); err != nil {
		return // never started its node
	}
	if out, err := h.Command(killall).CombinedOutput(); err != nil {
		c.t.Errorf("%s: %v\n%s", killall, err, out)
	}
}

// cleanup runs every node's kill-all script; no shim, container or mount
// of the test may be left.
func (c *cluster) cleanup() {
	for d, h := range c.dataDir {
		c.killAll(filepath.Base(d))
		if out, _ := exec.Command("pgrep", "-f", "containerd-shim-runc-v2 .*-address "+d+"/").Output(); len(out) > 0 {
			c.t.Errorf("shims of %s left after kill-all: %s", d, out)
		}
		if m := h.Mounts(d); len(m) > 0 {
			c.t.Errorf("mounts left on %s after kill-all: %v", h.Name, m)
		}
		if _, err := os.Stat(filepath.Join(d, "data", "current")); err != nil {
			continue // no node ran there
		}
		if rules, _ := h.Command("iptables-save").Output(); strings.Contains(string(rules), "CLUSTER-NOLEAK") || strings.Contains(string(rules), "KUBE-") {
			c.t.Errorf("firewall rules left on %s after kill-all:\n%s", h.Name, rules)
		}
		if tables, _ := h.Command("nft", "list", "tables").Output(); strings.Contains(string(tables), "cluster-noleak") || strings.Contains(string(tables), "kube-proxy") {
			c.t.Errorf("nftables tables left on %s after kill-all:\n%s", h.Name, tables)
		}
		if routes, _ := h.Command("ip", "route", "show", "proto", "239").Output(); len(strings.TrimSpace(string(routes))) > 0 {
			c.t.Errorf("routes left on %s after kill-all: %s", h.Name, routes)
		}
	}
	os.RemoveAll(c.dir)
}

func client(t *testing.T, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	return must(kubernetes.NewForConfig(cfg))
}

// leasesRenewed wants every node's kubelet to have renewed its lease since.
func leasesRenewed(k *kubernetes.Clientset, since time.Time) error {
	leases, err := k.CoordinationV1().Leases("kube-node-lease").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, l := range leases.Items {
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(since) {
			return fmt.Errorf("lease of %s not renewed since %s", l.Name, since.Format(time.TimeOnly))
		}
	}
	return nil
}

// nodesReady wants n nodes, all Ready.
func nodesReady(k *kubernetes.Clientset, n int) error {
	nodes, err := k.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) != n {
		return fmt.Errorf("%d nodes, want %d", len(nodes.Items), n)
	}
	for _, node := range nodes.Items {
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("node %s not Ready", node.Name)
		}
	}
	return nil
}

// deployWeb runs 3 replicas spread over the nodes and a NodePort Service,
// and returns the running pods.
func deployWeb(t *testing.T, k *kubernetes.Clientset) ([]corev1.Pod, *corev1.Service) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := harness.WebDeployment("web", testImage, 3)
	d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
	}}
	if _, err := k.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := k.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	harness.WaitFor(t, 3*time.Minute, "3 web pods running", func() error {
		list, err := k.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					pods = append(pods, p)
				}
			}
		}
		if len(pods) != 3 {
			return fmt.Errorf("%d of 3 web pods ready", len(pods))
		}
		return nil
	})
	return pods, svc
}

func allSeen(seen map[string]bool, pods []corev1.Pod) error {
	for _, p := range pods {
		if !seen["hello from "+p.Name] {
			return fmt.Errorf("no answer from %s yet (seen %v)", p.Name, seen)
		}
	}
	return nil
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// refusedFast reports whether webapp's failure output says it failed within
// a second ("failed after Nms: …").
func refusedFast(out string) bool {
	_, rest, ok := strings.Cut(out, "failed after ")
	if !ok {
		return false
	}
	ms, _, _ := strings.Cut(rest, "ms")
	n, err := strconv.Atoi(ms)
	return err == nil && n < 1000
}

// rejectedPackets sums the packet counters of rejecting rules in
// `iptables -L -v -x` and `nft list table` output.
func rejectedPackets(listing string) int {
	total := 0
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "REJECT" {
			n, _ := strconv.Atoi(f[0])
			total += n
		}
		if i := slices.Index(f, "packets"); i > 0 && i+1 < len(f) && slices.Contains(f, "reject") {
			n, _ := strconv.Atoi(f[i+1])
			total += n
		}
	}
	return total
}

// podsReady wants every pod of the namespace Running and Ready.
func podsReady(k *kubernetes.Clientset, ns string) error {
	list, err := k.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("no pods in %s", ns)
	}
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodSucceeded {
			continue // a finished one-shot pod (local-path's helper)
		}
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		if !ready {
			return fmt.Errorf("%s/%s is %s, not Ready", ns, p.Name, p.Status.Phase)
		}
	}
	return nil
}
