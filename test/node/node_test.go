// Package node is the single-node acceptance test: plain `cluster server`
// (with its node) on a fresh data dir, offline, running a locally built
// image. It needs root, and it changes this host's network (cni0,
// flannel.1, iptables rules) until the data dir's kill-all script undoes it.
package node

import (
	"bytes"
	"context"
	"fmt"
	"github.com/cluster-io/cluster/internal/memtrim"
	"github.com/cluster-io/cluster/test/harness"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const testImage = "localhost/test/webapp:v1"

type node struct {
	t          *testing.T
	bin        string
	dir        string
	dataDir    string
	kubeconfig string
	port       int
	cmd        *exec.Cmd
	log        *harness.SyncBuffer
	exited     chan error
}

func TestSingleNodeRunsPodsOffline(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CI runs as root): it runs containerd, kubelet and flannel")
	}
	n := newNode(t)
	buildImages(t, filepath.Join(n.dataDir, "agent", "images"))

	begin := time.Now()
	n.start()
	// Pods of another node on this host's network (a test server stopped
	// without its kill-all) get this node's pod IPs too: say so now rather
	// than through a Service that misses a replica a minute later.
	for _, line := range strings.Split(n.log.String(), "\n") {
		if strings.Contains(line, "other nodes:") {
			t.Fatalf("this host runs another node's pods in the same network namespace:\n%s", line)
		}
	}
	c := n.client()
	harness.WaitFor(t, 3*time.Minute, "node Ready", func() error { return nodeReady(c) })
	t.Logf("node Ready %.1fs after start", time.Since(begin).Seconds())
	for _, want := range []string{"images: [1/2] importing busybox.tar", "imported " + testImage, "image localhost/cluster/pause:3.10 ready"} {
		if !strings.Contains(n.log.String(), want) && !(strings.Contains(want, "busybox") && !strings.Contains(n.log.String(), "busybox.tar")) {
			t.Errorf("start log lacks %q (image import progress)", want)
		}
	}

	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	_, err := c.AppsV1().Deployments("default").Create(ctx, harness.WebDeployment("web", testImage, 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 3*time.Minute, "3 web replicas available", func() error { return deploymentAvailable(c, "web", 3) })
	pods := webPods(t, c)
	t.Logf("deployment Available %.1fs after start", time.Since(begin).Seconds())

	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	t.Run("service reaches every replica from the host", func(t *testing.T) {
		seen := map[string]bool{}
		harness.WaitFor(t, time.Minute, "answers from all 3 replicas", func() error {
			out, err := exec.Command("curl", "-sf", "-m", "3", url).Output()
			if err != nil {
				return fmt.Errorf("curl %s: %v", url, err)
			}
			seen[strings.TrimSpace(string(out))] = true
			return allSeen(seen, pods)
		})
	})

	client := runClientPod(t, c)
	t.Run("service reaches every replica from another pod", func(t *testing.T) {
		seen := map[string]bool{}
		harness.WaitFor(t, time.Minute, "answers from all 3 replicas", func() error {
			out, err := n.kubectl("exec", client, "--", "/webapp", "get", url)
			if err != nil {
				return fmt.Errorf("exec in %s: %v: %s", client, err, out)
			}
			seen[strings.TrimSpace(out)] = true
			return allSeen(seen, pods)
		})
	})

	t.Run("kubectl logs and exec", func(t *testing.T) {
		out, err := n.kubectl("logs", pods[0])
		if err != nil || !strings.Contains(out, "listening on :8080") {
			t.Errorf("kubectl logs %s: %v\n%s", pods[0], err, out)
		}
		out, err = n.kubectl("exec", pods[0], "--", "/webapp", "get", "http://127.0.0.1:8080/")
		if err != nil || strings.TrimSpace(out) != "hello from "+pods[0] {
			t.Errorf("kubectl exec %s: %v\n%s", pods[0], err, out)
		}
	})

	t.Run("kubectl port-forward", func(t *testing.T) {
		port := strconv.Itoa(harness.FreePort(t))
		cmd := exec.Command(n.bin, "kubectl", "--kubeconfig", n.kubeconfig, "port-forward", "pod/"+pods[0], port+":8080")
		cmd.Env = harness.CleanEnv()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		harness.WaitFor(t, 30*time.Second, "an answer through port-forward", func() error {
			out, err := exec.Command("curl", "-sf", "-m", "3", "http://127.0.0.1:"+port+"/").Output()
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(out)) != "hello from "+pods[0] {
				return fmt.Errorf("got %q", out)
			}
			return nil
		})
	})

	t.Run("ctr and crictl talk to the node's containerd", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"ctr", "images", "ls", "-q"}, []string{"localhost/cluster/pause:3.10", testImage}},
			{[]string{"crictl", "ps", "-o", "table"}, []string{"web"}},
			{[]string{"crictl", "pods", "--name", pods[0], "-q"}, nil},
		} {
			cmd := exec.Command(n.bin, tc.args...)
			cmd.Env = append(harness.CleanEnv(), "CLUSTER_DATA_DIR="+n.dataDir)
			out, err := cmd.CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) == 0 {
				t.Errorf("cluster %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("cluster %s: no %q in\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
		}
	})

	t.Run("pause containers stay under 2 MB RSS", func(t *testing.T) {
		out, err := exec.Command("pgrep", "-x", "pause").Output()
		if err != nil {
			t.Fatalf("no pause process: %v", err)
		}
		for _, pid := range strings.Fields(string(out)) {
			status, err := os.ReadFile("/proc/" + pid + "/status")
			if err != nil {
				continue // gone meanwhile
			}
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
					if kb == 0 || kb > 2048 {
						t.Errorf("pause %s: RSS %d kB", pid, kb)
					}
				}
			}
		}
	})

	t.Run("a deleted pod is replaced", func(t *testing.T) {
		if err := c.CoreV1().Pods("default").Delete(ctx, pods[0], metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "a replacement pod", func() error {
			ready, all := readyWebPods(t, c)
			if len(ready) != 3 || contains(all, pods[0]) {
				return fmt.Errorf("ready %v of %v (%s must be gone)", ready, all, pods[0])
			}
			return nil
		})
	})

	// containerd runs inside the server process (agent/containerd Daemon):
	// the process listening on containerd's socket is the server itself.
	t.Run("containerd runs in the server process", func(t *testing.T) {
		sock := filepath.Join(n.dataDir, "agent", "run", "containerd.sock")
		pids, err := unixSocketListeners(sock)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 || pids[0] != n.cmd.Process.Pid {
			t.Errorf("%s is held by processes %v; want only the server, %d", sock, pids, n.cmd.Process.Pid)
		}
	})

	// internal/memtrim: the server lowers its GC target, unmaps the
	// binary's pages and runs on one processor while idle; the pods and the
	// node go on (the subtests after this one run on them).
	t.Run("the start's pages of the binary are released", func(t *testing.T) {
		harness.WaitFor(t, time.Minute, "the server's release", func() error {
			if got := strings.Count(n.log.String(), "released the start's pages of the binary"); got < 1 {
				return fmt.Errorf("no release line in the log")
			}
			return nil
		})
		gcLine := fmt.Sprintf("idle: the garbage collector now lets the heap grow by %d%%", memtrim.NodeIdleGOGC)
		if got := strings.Count(n.log.String(), gcLine); got != 1 {
			t.Errorf("%d lines %q; want 1 (the server's, which runs a node: containerd runs in it)", got, gcLine)
		}
		for _, line := range strings.Split(n.log.String(), "\n") {
			if strings.Contains(line, "releasing the start's pages") {
				t.Errorf("release failed: %s", line)
			}
		}
		// internal/procs: once quiet for 10 s, the server's Go code runs on
		// one processor and its threads' timers may fire 100 ms late; it
		// still serves.
		harness.WaitFor(t, time.Minute, "the server's switch to idle", func() error {
			log := n.log.String()
			if !strings.Contains(log, "Go code runs on 1 processor") || !strings.Contains(log, "timers may fire up to 100ms late") {
				return fmt.Errorf("no line saying the server runs on one processor with a 100 ms timer slack")
			}
			return nil
		})
		harness.WaitFor(t, time.Minute, "every server thread on a 100 ms timer slack", func() error {
			return timerSlacks([]int{n.cmd.Process.Pid}, 100_000_000)
		})
		// A container started now is the child of a shim that containerd,
		// inside the idle server, started: the bundled shim gives itself and
		// so its containers the kernel's punctual default back.
		if _, err := c.CoreV1().Pods("default").Create(context.Background(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "punctual"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever,
			}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 2*time.Minute, "pod punctual running", func() error { return podRunning(c, "punctual") })
		shims, err := shimTree(n.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := timerSlacks(shims, 50_000); err != nil {
			t.Errorf("shims and containers: %v", err)
		}
		if err := c.CoreV1().Pods("default").Delete(context.Background(), "punctual", metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
		harness.WaitFor(t, time.Minute, "3 web replicas available", func() error { return deploymentAvailable(c, "web", 3) })
		out, err := exec.Command("curl", "-sf", "-m", "3", url).Output()
		if err != nil || !strings.HasPrefix(string(out), "hello from web-") {
			t.Errorf("service after the release: %v %q", err, out)
		}
	})

	t.Run("a restart keeps the pods running", func(t *testing.T) {
		before := containerIDs(t, c)
		n.stop()
		n.start()
		c = n.client()
		harness.WaitFor(t, 3*time.Minute, "node Ready after restart", func() error { return nodeReady(c) })
		harness.WaitFor(t, 2*time.Minute, "3 web replicas available after restart", func() error { return deploymentAvailable(c, "web", 3) })
		if !strings.Contains(n.log.String(), "already imported") {
			t.Error("a restart imported the unchanged image archives again")
		}
		after := containerIDs(t, c)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("containers changed across a restart:\nbefore %v\nafter  %v", before, after)
		}
		out, err := exec.Command("curl", "-sf", "-m", "3", url).Output()
		if err != nil || !strings.HasPrefix(string(out), "hello from web-") {
			t.Errorf("service after restart: %v %q", err, out)
		}
	})
}

func newNode(t *testing.T) *node {
	bin := os.Getenv("CLUSTER_BIN")
	if bin == "" {
		t.Fatal("CLUSTER_BIN is not set: build with scripts/build and run through scripts/test (the node binaries must be embedded)")
	}
	dir, err := os.MkdirTemp("", "cluster-node-test-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, bin: bin, dir: dir, dataDir: filepath.Join(dir, "data"), kubeconfig: filepath.Join(dir, "kubeconfig.yaml"), port: harness.FreePort(t)}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.log = &harness.SyncBuffer{}
	n.cmd = exec.Command(n.bin, "server",
		"--data-dir", n.dataDir,
		"--config", filepath.Join(n.dir, "config.yaml"),
		"--https-listen-port", strconv.Itoa(n.port),
		"--write-kubeconfig", n.kubeconfig,
		// Other test packages run servers at the same time: keep the
		// control plane's loopback health ports apart from theirs.
		"--kube-controller-manager-arg", "secure-port="+strconv.Itoa(harness.FreePort(n.t)),
		"--kube-scheduler-arg", "secure-port="+strconv.Itoa(harness.FreePort(n.t)),
		// CoreDNS would forward its loop probe to this host's resolver, off
		// the machine; DNS is tested in test/multinode with a resolver of
		// the test's own.
		"--disable", "coredns",
	)
	// The start's pages are released soon, so that the subtests after it
	// run on processes that had theirs unmapped.
	n.cmd.Env = append(harness.CleanEnv(), "CLUSTER_TRIM_AFTER=5s")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(n.cmd, n.exited)
	deadline := time.After(3 * time.Minute)
	for !strings.Contains(n.log.String(), "started in") {
		select {
		case err := <-n.exited:
			n.exited <- err
			n.t.Fatalf("server exited during start: %v\n%s", err, harness.Tail(n.log.String(), 80))
		case <-deadline:
			n.t.Fatalf("node not started after 3m\n%s", harness.Tail(n.log.String(), 80))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *node) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		n.exited <- err
		if err != nil {
			n.t.Errorf("server exited with %v after SIGTERM\n%s", err, harness.Tail(n.log.String(), 80))
		}
	case <-time.After(90 * time.Second):
		n.cmd.Process.Kill()
		n.t.Errorf("server did not stop within 90s\n%s", harness.Tail(n.log.String(), 80))
	}
}

// cleanup stops the server and runs the data dir's kill-all script, which
// must leave no container, shim or mount of this node behind.
func (n *node) cleanup() {
	n.stop()
	killall := filepath.Join(n.dataDir, "data", "current", "bin", "cluster-killall.sh")
	if out, err := exec.Command(killall).CombinedOutput(); err != nil {
		n.t.Errorf("%s: %v\n%s", killall, err, out)
	}
	if out, _ := exec.Command("pgrep", "-f", "containerd-shim-runc-v2 .*-address "+n.dataDir+"/").Output(); len(out) > 0 {
		n.t.Errorf("shims left after kill-all: %s", out)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); bytes.Contains(mounts, []byte(n.dataDir+"/")) {
		n.t.Errorf("mounts left under %s after kill-all", n.dataDir)
	}
	if rules, _ := exec.Command("iptables-save").Output(); bytes.Contains(rules, []byte("CLUSTER-NOLEAK")) {
		n.t.Errorf("the node's no-leak rules are left after kill-all")
	}
	if routes, _ := exec.Command("ip", "route", "show", "proto", "239").Output(); len(bytes.TrimSpace(routes)) > 0 {
		n.t.Errorf("the node's unreachable route is left after kill-all: %s", routes)
	}
	// A data dir other than the default has its own cgroup tree; left
	// behind, every later kubelet's cAdvisor walks it each minute.
	if root, err := os.ReadFile(filepath.Join(n.dataDir, "agent", "cgroup-root")); err != nil {
		n.t.Errorf("the node did not record its cgroup root: %v", err)
	} else {
		v1, _ := filepath.Glob("/sys/fs/cgroup/*" + strings.TrimSpace(string(root)))
		v2, _ := filepath.Glob("/sys/fs/cgroup" + strings.TrimSpace(string(root)))
		if left := append(v1, v2...); len(left) > 0 {
			n.t.Errorf("cgroups left after kill-all: %v", left)
		}
	}
	if n.t.Failed() {
		n.t.Logf("server log:\n%s", harness.Tail(n.log.String(), 80))
	}
	os.RemoveAll(n.dir)
}

func (n *node) client() *kubernetes.Clientset {
	n.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", n.kubeconfig)
	if err != nil {
		n.t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func (n *node) kubectl(args ...string) (string, error) {
	cmd := exec.Command(n.bin, append([]string{"kubectl", "--kubeconfig", n.kubeconfig, "--request-timeout", "20s"}, args...)...)
	cmd.Env = harness.CleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildImages runs the repo's image script into the air-gap folder before
// the first start, as an offline install would.
func buildImages(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("../../scripts/build-test-images", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build-test-images: %v\n%s", err, out)
	}
}

func runClientPod(t *testing.T, c *kubernetes.Clientset) string {
	t.Helper()
	_, err := c.CoreV1().Pods("default").Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "client", Image: testImage, ImagePullPolicy: corev1.PullNever,
			Env: []corev1.EnvVar{{Name: "LISTEN", Value: ":9090"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 2*time.Minute, "client pod running", func() error { return podRunning(c, "client") })
	return "client"
}

func podRunning(c *kubernetes.Clientset, name string) error {
	p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("pod %s %s", name, p.Status.Phase)
	}
	return nil
}

func nodeReady(c *kubernetes.Clientset) error {
	nodes, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) != 1 {
		return fmt.Errorf("%d nodes", len(nodes.Items))
	}
	for _, cond := range nodes.Items[0].Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("node %s not Ready", nodes.Items[0].Name)
}

func deploymentAvailable(c *kubernetes.Clientset, name string, replicas int32) error {
	d, err := c.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Status.AvailableReplicas != replicas || d.Status.UpdatedReplicas != replicas || d.Status.Replicas != replicas {
		return fmt.Errorf("deployment %s: %d/%d available", name, d.Status.AvailableReplicas, replicas)
	}
	return nil
}

func webPods(t *testing.T, c *kubernetes.Clientset) []string {
	t.Helper()
	list, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// readyWebPods returns the web pods that are Ready, and all web pods that
// still exist (terminating ones included).
func readyWebPods(t *testing.T, c *kubernetes.Clientset) (ready, all []string) {
	t.Helper()
	list, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		all = append(all, p.Name)
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				ready = append(ready, p.Name)
			}
		}
	}
	return ready, all
}

// containerIDs maps each running pod to its container IDs.
func containerIDs(t *testing.T, c *kubernetes.Clientset) map[string]string {
	t.Helper()
	list, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, p := range list.Items {
		for _, s := range p.Status.ContainerStatuses {
			ids[p.Name+"/"+s.Name] = s.ContainerID
		}
	}
	if len(ids) == 0 {
		t.Fatal("no containers")
	}
	return ids
}

func allSeen(seen map[string]bool, pods []string) error {
	for _, p := range pods {
		if !seen["hello from "+p] {
			return fmt.Errorf("no answer from %s yet (seen %v)", p, seen)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unixSocketListeners returns the PIDs of the processes holding the
// listening unix socket bound to path (from /proc/net/unix and each
// process's file descriptors).
func unixSocketListeners(path string) ([]int, error) {
	table, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n") {
		// Num RefCount Protocol Flags Type St Inode Path; flags 00010000 = listening.
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path && f[3] == "00010000" {
			inodes["socket:["+f[6]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return nil, fmt.Errorf("no listening socket at %s", path)
	}
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range procs {
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && inodes[target] {
				pid, _ := strconv.Atoi(strings.Split(dir, "/")[2])
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// timerSlacks checks the timer slack of every thread of the processes pids.
func timerSlacks(pids []int, ns int64) error {
	threads := 0
	for _, pid := range pids {
		tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue // ended meanwhile
		}
		for _, tid := range tids {
			b, err := os.ReadFile("/proc/" + tid.Name() + "/timerslack_ns")
			if err != nil {
				continue
			}
			got, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return err
			}
			if got != ns {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				return fmt.Errorf("process %d (%s) thread %s: timer slack %d ns; want %d", pid, strings.TrimSpace(string(comm)), tid.Name(), got, ns)
			}
			threads++
		}
	}
	if threads == 0 {
		return fmt.Errorf("no thread of processes %v found", pids)
	}
	return nil
}

// shimTree lists the containerd shims of the node at dataDir and all
// their descendants (pause and the containers' processes).
func shimTree(dataDir string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dataDir, "agent", "run", "containerd.sock")
	parent := map[int]int{}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "containerd-shim-runc-v2") && strings.Contains(string(cmdline), sock) {
			out = append(out, pid)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no shim of %s running", sock)
	}
	shims := len(out)
	for pid := range parent {
		for p := parent[pid]; p > 1; p = parent[p] {
			if slices.Contains(out[:shims], p) {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}
