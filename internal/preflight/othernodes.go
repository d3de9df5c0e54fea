package preflight

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// otherNodes looks in proc (/proc) for containerd shims in this process's
// network namespace that serve another containerd than the one under
// dataDir: pods of another node (another data dir, or k3s) run here. Every
// node hands out pod IPs from the same ranges on the same cni0 bridge, so
// this node's pods would get the addresses of those (seen in a test run:
// a Service's replica answered with a leftover CoreDNS pod's 404).
func otherNodes(proc, dataDir string) Result {
	r := Result{Name: "other nodes"}
	ownNet, err := os.Readlink(filepath.Join(proc, "self", "ns", "net"))
	if err != nil {
		return r // nothing to compare with; say nothing rather than guess
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	// The socket dir as agent.Layout makes it: <data-dir>/agent/run.
	ownSock := filepath.Join(dataDir, "agent", "run") + string(filepath.Separator)
	entries, err := os.ReadDir(proc)
	if err != nil {
		return r
	}
	var others []string
	for _, e := range entries {
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue // not a process
		}
		cmdline, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		i := slices.Index(args, "-address")
		if i < 0 || i+1 >= len(args) {
			continue
		}
		addr := args[i+1]
		if strings.HasPrefix(addr, ownSock) {
			continue
		}
		if netns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns", "net")); err != nil || netns != ownNet {
			continue // its pods live on another network
		}
		if !slices.Contains(others, addr) {
			others = append(others, addr)
		}
	}
	if len(others) == 0 {
		return r
	}
	r.Status = Warning
	r.Detail = "pods of another node run in this network namespace (containerd " + strings.Join(others, ", ") +
		"); their pod IPs come from the same ranges on the same cni0 bridge and will clash with this node's"
	var killall []string
	for _, addr := range others {
		if dir, ok := strings.CutSuffix(addr, "/agent/run/containerd.sock"); ok {
			killall = append(killall, filepath.Join(dir, "data", "current", "bin", "cluster-killall.sh"))
		}
	}
	if len(killall) == len(others) {
		r.Fix = "stop that node and run " + strings.Join(killall, " and ")
	} else {
		r.Fix = "stop that node and remove its pods (a node of ours: <its data-dir>/data/current/bin/cluster-killall.sh)"
	}
	r.Fix += ", or run this node in a network namespace of its own"
	return r
}
