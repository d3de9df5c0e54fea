package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cluster-io/cluster/test/harness"
)

// inFreshNetwork runs script under sh in new network and mount namespaces
// (loopback up), so that the ports other tests' nodes hold are free and a
// tmpfs mounted there stays private.
func inFreshNetwork(t *testing.T, env []string, script string) (string, int) {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", "ip link set lo up\n"+script)
	cmd.Env = append(harness.CleanEnv(), append(env, "CLUSTER_BIN="+clusterBin)...)
	out, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); ok {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out), 0
}

func lineWith(out, prefix, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, name) {
			return l
		}
	}
	return ""
}

func TestCheckConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs check-config in new namespaces and needs root (CI runs as root)")
	}
	data := filepath.Join(t.TempDir(), "data")

	t.Run("this host has what a node needs", func(t *testing.T) {
		out, code := inFreshNetwork(t, nil, `"$CLUSTER_BIN" check-config --data-dir `+data)
		if code != 0 || strings.Contains(out, "\nerror") || strings.HasPrefix(out, "error") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		for _, name := range []string{"root", "overlay filesystem", "br_netfilter", "vxlan", "nf_conntrack", "cgroups", "iptables", "ip_forward",
			"swap", "capabilities", "security modules", "port 6443", "port 10250", "free space", "free inodes"} {
			if lineWith(out, "", name) == "" {
				t.Errorf("no %q check in:\n%s", name, out)
			}
		}
		if _, err := os.Stat(data); err == nil {
			t.Error("check-config created the data dir")
		}
	})

	t.Run("without iptables", func(t *testing.T) {
		out, code := inFreshNetwork(t, nil, `PATH=/nonexistent "$CLUSTER_BIN" check-config --data-dir `+data)
		if l := lineWith(out, "error", "iptables"); code != 1 || !strings.Contains(l, "needs iptables on PATH") || !strings.Contains(l, "fix: install iptables") {
			t.Errorf("exit %d, iptables line %q:\n%s", code, l, out)
		}
	})

	full := `mkdir -p ` + data + ` && mount -t tmpfs -o size=1m tmpfs ` + data + `
dd if=/dev/zero of=` + data + `/fill bs=64k 2>/dev/null || true
`
	t.Run("data dir on a full file system", func(t *testing.T) {
		out, code := inFreshNetwork(t, nil, full+`"$CLUSTER_BIN" check-config --data-dir `+data)
		if l := lineWith(out, "error", "free space"); code != 1 || !strings.Contains(l, "only 0 MiB free") {
			t.Errorf("exit %d, free space line %q:\n%s", code, l, out)
		}
	})

	t.Run("a server on a full file system stops with one line", func(t *testing.T) {
		out, code := inFreshNetwork(t, nil, full+`"$CLUSTER_BIN" server --disable-agent --config /dev/null --data-dir `+data+`/server --write-kubeconfig `+data+`/kc.yaml`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 1 || !strings.HasPrefix(lines[len(lines)-1], "Error: free space: only 0 MiB free") || strings.Count(out, "Error:") != 1 {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})

	t.Run("a port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		cmd := exec.Command(clusterBin, "check-config", "--data-dir", data, "--role", "agent", "--lb-server-port", port)
		cmd.Env = harness.CleanEnv()
		out, err := cmd.CombinedOutput()
		want := fmt.Sprintf("error    port %s: address 127.0.0.1:%s is already in use", port, port)
		if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "--lb-server-port") {
			t.Errorf("err %v, want %q in:\n%s", err, want, out)
		}
	})
}
