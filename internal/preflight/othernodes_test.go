package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc writes a /proc with "self" and the given processes (pid →
// argv, netns link).
func fakeProc(t *testing.T, procs map[string]struct {
	argv  []string
	netns string
}) string {
	t.Helper()
	proc := t.TempDir()
	write := func(pid string, argv []string, netns string) {
		dir := filepath.Join(proc, pid, "ns")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(netns, filepath.Join(dir, "net")); err != nil {
			t.Fatal(err)
		}
	}
	write("self", []string{"cluster", "server"}, "net:[4026531840]")
	for pid, p := range procs {
		write(pid, p.argv, p.netns)
	}
	return proc
}

func TestOtherNodes(t *testing.T) {
	const hostNet, podNet = "net:[4026531840]", "net:[4026532999]"
	shim := func(addr string) []string {
		return []string{"/var/lib/x/data/abc/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "f00", "-address", addr}
	}
	type proc = struct {
		argv  []string
		netns string
	}
	for _, tc := range []struct {
		name  string
		procs map[string]proc
		want  Status
		names string // in the detail
		fix   string // in the fix
	}{
		{"nothing else runs", nil, OK, "", ""},
		{"this data dir's own pods (a restart)", map[string]proc{"10": {shim("/data/me/agent/run/containerd.sock"), hostNet}}, OK, "", ""},
		{"another data dir's pods here", map[string]proc{"11": {shim("/tmp/old/agent/run/containerd.sock"), hostNet}}, Warning, "/tmp/old/agent/run/containerd.sock", "run /tmp/old/data/current/bin/cluster-killall.sh"},
		{"k3s's pods here", map[string]proc{"12": {shim("/run/k3s/containerd/containerd.sock"), hostNet}}, Warning, "/run/k3s/containerd/containerd.sock", "remove its pods"},
		{"another node in its own network namespace", map[string]proc{"13": {shim("/tmp/node2/agent/run/containerd.sock"), podNet}}, OK, "", ""},
		{"not a shim", map[string]proc{"14": {[]string{"/usr/bin/containerd", "-address", "/run/containerd/containerd.sock"}, hostNet}}, OK, "", ""},
		{"one line for many shims of one node", map[string]proc{
			"15": {shim("/tmp/old/agent/run/containerd.sock"), hostNet},
			"16": {shim("/tmp/old/agent/run/containerd.sock"), hostNet},
		}, Warning, "/tmp/old/agent/run/containerd.sock)", "run /tmp/old/data/current/bin/cluster-killall.sh,"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := otherNodes(fakeProc(t, tc.procs), "/data/me")
			if r.Status != tc.want {
				t.Fatalf("status %s, want %s: %s", r.Status, tc.want, r)
			}
			if tc.want == Warning && (!strings.Contains(r.Detail, "(containerd "+tc.names) || !strings.Contains(r.Fix, tc.fix)) {
				t.Errorf("warning should name %s and say %q: %s", tc.names, tc.fix, r)
			}
		})
	}
}
