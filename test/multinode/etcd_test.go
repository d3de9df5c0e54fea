package multinode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/test/harness"
)

// Three servers on embedded etcd, each in its own network namespace, and
// an agent told about the first only. One server is killed with SIGKILL:
// the API through the others keeps taking writes and loses none it
// acknowledged, the agent's node stays Ready, and the killed server comes
// back and catches up. Then a deleted server Node takes its etcd member
// along, and a snapshot restored with --cluster-reset brings the cluster
// back to the moment of the snapshot.
func TestThreeServersEmbeddedEtcd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CI runs as root): it runs nodes in network namespaces")
	}
	c := newCluster(t)
	hosts := []*harness.Host{c.hosts.AddHost("e1"), c.hosts.AddHost("e2"), c.hosts.AddHost("e3")}
	aHost := c.hosts.AddHost("ea")
	// Packaged components off: four nodes share two cores here.
	common := []string{"--config", c.emptyConfig(), "--disable", "coredns,metrics-server,local-storage,servicelb", "--disable-helm-controller"}
	serverArgs := func(i int) []string {
		name := fmt.Sprintf("server-%d", i+1)
		args := append([]string{"server", "--data-dir", c.data(name, hosts[i]), "--node-name", name,
			"--write-kubeconfig", filepath.Join(c.dir, map[bool]string{true: "admin.yaml", false: name + ".yaml"}[i == 0])}, common...)
		if i == 0 {
			return append(args, "--cluster-init")
		}
		if i == 1 {
			// Every minute, keeping two: the test runs long enough to see it.
			args = append(args, "--etcd-snapshot-schedule-cron", "* * * * *", "--etcd-snapshot-retention", "2")
		}
		return append(args, "--server", "https://"+hosts[0].IP+":6443", "--token-file", filepath.Join(c.dir, "server-1", "server", "token"))
	}
	servers := make([]*proc, 3)
	// server-1 starts as a single server on SQLite, then grows: with
	// --cluster-init its data moves into etcd.
	sqliteArgs := serverArgs(0)
	sqliteArgs = sqliteArgs[:len(sqliteArgs)-1]
	servers[0] = c.start(hosts[0], sqliteArgs...)
	servers[0].waitLog("started in", 3*time.Minute)
	k1 := client(t, c.hostKubeconfig(hosts[0]))
	if _, err := k1.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "from-sqlite"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	servers[0].stop()
	servers[0] = c.start(hosts[0], serverArgs(0)...)
	servers[0].waitLog("started in", 3*time.Minute)
	tokenFile := filepath.Join(c.dir, "server-1", "server", "token")
	t.Run("--cluster-init migrates a SQLite cluster into etcd", func(t *testing.T) {
		if _, err := k1.CoreV1().ConfigMaps("default").Get(context.Background(), "from-sqlite", metav1.GetOptions{}); err != nil {
			t.Errorf("the ConfigMap written on SQLite: %v", err)
		}
		if !strings.Contains(servers[0].log.String(), "migrated") {
			t.Errorf("server-1 did not log the migration")
		}
		if _, err := os.Stat(filepath.Join(c.dir, "server-1", "server", "db", "state.db.migrated")); err != nil {
			t.Errorf("the SQLite file is not kept as state.db.migrated: %v", err)
		}
	})

	t.Run("a server cannot join with a bootstrap token", func(t *testing.T) {
		boot := c.clusterCmd(c.hostKubeconfig(hosts[0]), "token", "create")
		cmd := hosts[1].Command(c.bin, "server", "--data-dir", filepath.Join(c.dir, "refused-server"), "--config", c.emptyConfig(),
			"--server", "https://"+hosts[0].IP+":6443", "--token", boot, "--disable-agent")
		cmd.Env = harness.CleanEnv()
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "Error: ") || !strings.Contains(string(out), "only with the server token") {
			t.Errorf("want exit 1 and an Error about the server token; got %v:\n%s", err, harness.Tail(string(out), 15))
		}
	})

	for i := 1; i < 3; i++ {
		begin := time.Now()
		servers[i] = c.start(hosts[i], serverArgs(i)...)
		servers[i].waitLog("started in", 4*time.Minute)
		t.Logf("server-%d joined and started in %s", i+1, time.Since(begin).Round(100*time.Millisecond))
	}
	agentArgs := []string{"agent", "--server", "https://" + hosts[0].IP + ":6443", "--token-file", tokenFile,
		"--data-dir", c.data("agent", aHost), "--config", c.emptyConfig(), "--node-name", "agent"}
	agent := c.start(aHost, agentArgs...)
	harness.WaitFor(t, 3*time.Minute, "4 nodes Ready", func() error { return nodesReady(k1, 4) })

	etcdTLS := func(server string) datastore.EtcdTLS {
		d := filepath.Join(c.dir, server, "server", "tls", "etcd")
		return datastore.EtcdTLS{CA: filepath.Join(d, "ca.crt"), ClientCert: filepath.Join(d, "client.crt"), ClientKey: filepath.Join(d, "client.key")}
	}
	members := func(via int) ([]string, error) {
		ec, err := datastore.EtcdClient([]string{"https://" + hosts[via].IP + ":2379"}, etcdTLS(fmt.Sprintf("server-%d", via+1)))
		if err != nil {
			return nil, err
		}
		defer ec.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := ec.MemberList(ctx)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, m := range list.Members {
			if m.IsLearner {
				return nil, fmt.Errorf("member %s is still a learner", m.Name)
			}
			names = append(names, m.Name)
		}
		sort.Strings(names)
		return names, nil
	}

	t.Run("three voting etcd members; etcd answers only clients with certificates", func(t *testing.T) {
		harness.WaitFor(t, time.Minute, "3 voting members", func() error {
			m, err := members(2)
			if err == nil && len(m) != 3 {
				err = fmt.Errorf("members %v", m)
			}
			return err
		})
		out, err := exec.Command("curl", "-sS", "-m", "5", "--cacert", etcdTLS("server-1").CA, "https://"+hosts[0].IP+":2379/version").CombinedOutput()
		if err == nil {
			t.Errorf("etcd answered a client without a certificate: %s", out)
		}
		// The apiserver's client certificates are not etcd's.
		admin := filepath.Join(c.dir, "server-1", "server", "tls")
		out, err = exec.Command("curl", "-sS", "-m", "5", "--cacert", etcdTLS("server-1").CA, "--cert", filepath.Join(admin, "client-admin.crt"),
			"--key", filepath.Join(admin, "client-admin.key"), "https://"+hosts[0].IP+":2379/version").CombinedOutput()
		if err == nil {
			t.Errorf("etcd answered the cluster admin's client certificate: %s", out)
		}
		nodes, err := k1.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/etcd=true"})
		if err != nil || len(nodes.Items) != 3 {
			t.Errorf("nodes with the etcd role: %v %v", err, nodes)
		}
	})

	agentReadySince := func(k *kubernetes.Clientset) (time.Time, error) {
		n, err := k.CoreV1().Nodes().Get(context.Background(), "agent", metav1.GetOptions{})
		if err != nil {
			return time.Time{}, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status != corev1.ConditionTrue {
					return time.Time{}, fmt.Errorf("agent %s: %s", cond.Status, cond.Message)
				}
				return cond.LastTransitionTime.Time, nil
			}
		}
		return time.Time{}, errors.New("agent has no Ready condition")
	}
	readySince, err := agentReadySince(k1)
	if err != nil {
		t.Fatal(err)
	}
	k2 := client(t, c.hostKubeconfig(hosts[1]))
	k3 := client(t, c.hostKubeconfig(hosts[2]))

	t.Run("kill -9 one server: writes through the others go on and none is lost; it comes back and catches up", func(t *testing.T) {
		var (
			mu        sync.Mutex
			acked     []string
			lastError error
		)
		stop := make(chan struct{})
		done := make(chan struct{})
		killed := make(chan time.Time, 1)
		var firstAfterKill time.Duration
		go func() {
			defer close(done)
			var killedAt time.Time
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case at := <-killed:
					killedAt = at
				default:
				}
				k := []*kubernetes.Clientset{k2, k3}[i%2]
				name := fmt.Sprintf("w-%04d", i)
				// A short timeout: a write stuck on the lost member gives way to
				// the next one soon, so the first acknowledgement after the
				// kill is measured to within ~2 s.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := k.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": name}}, metav1.CreateOptions{})
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, name)
					if !killedAt.IsZero() && firstAfterKill == 0 {
						firstAfterKill = time.Since(killedAt)
					}
				} else {
					lastError = err
				}
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}()
		time.Sleep(3 * time.Second)
		if err := servers[0].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killedAt := time.Now()
		killed <- killedAt
		<-servers[0].exited
		servers[0].exited <- errors.New("killed")
		time.Sleep(20 * time.Second)
		mu.Lock()
		n, first := len(acked), firstAfterKill
		mu.Unlock()
		if first == 0 || first > 10*time.Second {
			t.Errorf("first acknowledged write %s after the kill, want ≤ 10s (last error: %v)", first, lastError)
		}
		t.Logf("first write acknowledged %s after kill -9 of server-1; %d writes acknowledged so far", first.Round(time.Millisecond), n)

		// Its kubelet still reaches the API (through the other servers):
		// the node's lease is renewed after the kill (every 30 s).
		harness.WaitFor(t, 70*time.Second, "the agent's lease renewed since the kill", func() error {
			l, err := k2.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), "agent", metav1.GetOptions{})
			if err != nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(killedAt) {
				return fmt.Errorf("not renewed since the kill at %s: %v %v", killedAt.Format(time.TimeOnly), err, l)
			}
			return nil
		})
		since, err := agentReadySince(k2)
		if err != nil || !since.Equal(readySince) {
			t.Errorf("the agent's node did not stay Ready: Ready since %s (was %s): %v", since, readySince, err)
		}
		if agent.hasExited() {
			t.Errorf("the agent exited:\n%s", harness.Tail(agent.log.String(), 30))
		}

		// The agent, restarted while the server it was given is down, joins
		// through a server it learned (<data-dir>/agent/etc/servers).
		agent.stop()
		agent = c.start(aHost, agentArgs...)
		agent.waitLog("joined https://", 2*time.Minute)
		if strings.Contains(agent.log.String(), "joined https://"+hosts[0].IP) {
			t.Errorf("the agent joined through the killed server?\n%s", harness.Tail(agent.log.String(), 20))
		}
		harness.WaitFor(t, time.Minute, "agent Ready after its restart", func() error { _, err := agentReadySince(k2); return err })

		// The killed server starts again (as its unit would) and catches up.
		servers[0] = c.start(hosts[0], serverArgs(0)...)
		servers[0].waitLog("started in", 3*time.Minute)
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		for name, k := range map[string]*kubernetes.Clientset{"server-1": k1, "server-2": k2} {
			list, err := k.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatalf("list through %s: %v", name, err)
			}
			have := map[string]bool{}
			for _, cm := range list.Items {
				have[cm.Name] = true
			}
			var lost []string
			for _, a := range acked {
				if !have[a] {
					lost = append(lost, a)
				}
			}
			if len(lost) > 0 {
				t.Errorf("through %s: %d of %d acknowledged writes lost: %v", name, len(lost), len(acked), lost)
			}
		}
		t.Logf("%d writes acknowledged in all, every one readable through the restarted server-1 and server-2", len(acked))
	})

	t.Run("deleting a server's node removes its etcd member", func(t *testing.T) {
		servers[2].stop()
		if err := k1.CoreV1().Nodes().Delete(context.Background(), "server-3", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, time.Minute, "2 etcd members", func() error {
			m, err := members(0)
			if err == nil && len(m) != 2 {
				err = fmt.Errorf("members %v", m)
			}
			return err
		})
	})

	t.Run("a snapshot restored with --cluster-reset brings back the cluster as it was", func(t *testing.T) {
		ctx := context.Background()
		if _, err := k2.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-snapshot"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s2Data := filepath.Join(c.dir, "server-2")
		snap := func(args ...string) string {
			cmd := hosts[1].Command(c.bin, append([]string{"etcd-snapshot", "--data-dir", s2Data}, args...)...)
			cmd.Env = harness.CleanEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("etcd-snapshot %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		scheduled := func() int {
			n := 0
			for _, l := range strings.Split(snap("ls"), "\n") {
				if strings.HasPrefix(l, "etcd-snapshot-server-2-") {
					n++
				}
			}
			return n
		}
		// Every minute: one is due within a minute of any moment.
		harness.WaitFor(t, 75*time.Second, "a scheduled snapshot of server-2", func() error {
			if scheduled() == 0 {
				var said []string
				for _, l := range strings.Split(servers[1].log.String(), "\n") {
					if strings.Contains(l, "snapshot") {
						said = append(said, l)
					}
				}
				return fmt.Errorf("none yet; server-2 said: %s", strings.Join(said, " | "))
			}
			return nil
		})
		if n := scheduled(); n > 2 {
			t.Errorf("%d scheduled snapshots, want at most 2 (retention 2):\n%s", n, snap("ls"))
		}
		out := snap("save", "--name", "before")
		path := strings.Fields(strings.TrimPrefix(out, "saved "))[0]
		if ls := snap("ls"); !strings.Contains(ls, filepath.Base(path)) {
			t.Errorf("ls does not list %s:\n%s", path, ls)
		}
		if _, err := k2.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-snapshot"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		servers[0].stop()
		servers[1].stop()
		// A corrupt snapshot is refused and changes nothing.
		bad := filepath.Join(c.dir, "corrupt-snapshot")
		data, _ := os.ReadFile(path)
		data[len(data)/2] ^= 0xff
		os.WriteFile(bad, data, 0o600)
		reset := func(snapshot string) (string, error) {
			cmd := hosts[1].Command(c.bin, append(serverArgs(1), "--cluster-reset", "--cluster-reset-restore-path", snapshot)...)
			cmd.Env = harness.CleanEnv()
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := reset(bad); err == nil || !strings.Contains(out, "unchanged") {
			t.Errorf("restore of a corrupt snapshot: %v, want a refusal that changes nothing:\n%s", err, harness.Tail(out, 10))
		}
		if out, err := reset(path); err != nil || !strings.Contains(out, "membership reset") {
			t.Fatalf("cluster reset: %v\n%s", err, harness.Tail(out, 30))
		}
		servers[1] = c.start(hosts[1], serverArgs(1)...)
		servers[1].waitLog("started in", 3*time.Minute)
		if _, err := k2.CoreV1().ConfigMaps("default").Get(ctx, "before-snapshot", metav1.GetOptions{}); err != nil {
			t.Errorf("before-snapshot after the restore: %v", err)
		}
		if _, err := k2.CoreV1().ConfigMaps("default").Get(ctx, "after-snapshot", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after-snapshot after the restore: %v, want NotFound", err)
		}
		m, err := members(1)
		if err != nil || len(m) != 1 {
			t.Errorf("members after the reset: %v %v, want one", m, err)
		}
	})
}
