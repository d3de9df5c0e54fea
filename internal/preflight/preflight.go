// Package preflight checks this host for what a node and a server need
// (kernel features, cgroups, firewall tools, free ports and disk), the way
// `cluster check-config` prints it and the server and agent check it at
// start: one line per check, ok / warning / error, and a fix for every
// problem. Nothing is changed on the host.
package preflight

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Status is a check's outcome.
type Status int

// Outcomes, from good to bad.
const (
	OK Status = iota
	Warning
	Error
)

func (s Status) String() string {
	return [...]string{"ok", "warning", "error"}[s]
}

// Result is one check.
type Result struct {
	Name   string
	Status Status
	Detail string
	Fix    string // for warnings and errors
}

func (r Result) String() string {
	s := fmt.Sprintf("%-8s %s", r.Status, r.Name)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	if r.Fix != "" {
		s += " (fix: " + r.Fix + ")"
	}
	return s
}

// Port is a TCP port that must be free.
type Port struct {
	Address string // host:port to bind, e.g. "0.0.0.0:10250"
	User    string // who needs it, e.g. "kubelet"
	Flag    string // the flag that moves it, if any
}

// Options say what to check.
type Options struct {
	DataDir  string
	Node     bool // containerd, kubelet, flannel and kube-proxy run here
	NFTables bool // kube-proxy in nftables mode
	Ports    []Port
}

// NodePorts are the node daemons' fixed ports.
var NodePorts = []Port{
	{Address: "0.0.0.0:10250", User: "kubelet", Flag: "--kubelet-arg=port=…"},
	{Address: "127.0.0.1:10248", User: "kubelet health"},
	{Address: "127.0.0.1:10249", User: "kube-proxy metrics"},
	{Address: "127.0.0.1:10256", User: "kube-proxy health"},
}

// Run runs every check that applies.
func Run(o Options) []Result {
	var rs []Result
	if o.Node {
		rs = append(rs, root())
		rs = append(rs, kernel()...)
		rs = append(rs, cgroups())
		rs = append(rs, firewall(o.NFTables)...)
		rs = append(rs, forwarding(), swap(), capabilities(), kmsg(), securityModules())
	}
	for _, p := range o.Ports {
		rs = append(rs, portFree(p))
	}
	if o.DataDir != "" {
		rs = append(rs, diskSpace(o.DataDir)...)
		if o.Node {
			rs = append(rs, otherNodes("/proc", o.DataDir))
		}
	}
	return rs
}

// Check runs the checks at a daemon's start: the first error is returned
// (alone: one clear line); without errors the warnings go to warn.
func Check(o Options, warn func(string)) error {
	rs := Run(o)
	if err := Err(rs); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Status == Warning {
			warn(r.String())
		}
	}
	return nil
}

// Err is the first error, as one line with its fix; nil if there is none.
func Err(rs []Result) error {
	for _, r := range rs {
		if r.Status == Error {
			msg := r.Name + ": " + r.Detail
			if r.Fix != "" {
				msg += " (fix: " + r.Fix + ")"
			}
			return errors.New(msg)
		}
	}
	return nil
}

func root() Result {
	if os.Geteuid() != 0 {
		return Result{Name: "root", Status: Error, Detail: "running a node (containerd, kubelet, flannel, kube-proxy) needs root",
			Fix: "run as root, or add --disable-agent to run the control plane only"}
	}
	return Result{Name: "root", Status: OK}
}

// kernelConfig reads /proc/config.gz or /boot/config-<release>, if either
// exists, into CONFIG_X → "y"/"m".
func kernelConfig() map[string]string {
	cfg := map[string]string{}
	var r io.Reader
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if gz, err := gzip.NewReader(f); err == nil {
			r = gz
		}
	} else if f, err := os.Open("/boot/config-" + release()); err == nil {
		defer f.Close()
		r = f
	}
	if r == nil {
		return cfg
	}
	for s := bufio.NewScanner(r); s.Scan(); {
		if k, v, ok := strings.Cut(s.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	return cfg
}

func release() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// moduleFile reports whether a loadable module for name is installed.
func moduleFile(name string) bool {
	found := false
	_ = filepath.WalkDir(filepath.Join("/lib/modules", release(), "kernel"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), name+".ko") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func kernel() []Result {
	cfg := kernelConfig()
	feature := func(name, config, module string, active bool, need Status, why string) Result {
		r := Result{Name: name}
		switch {
		case active:
			r.Status, r.Detail = OK, "present"
		case cfg[config] == "y":
			r.Status, r.Detail = OK, "built in"
		case cfg[config] == "m" || moduleFile(module):
			r.Status, r.Detail = need, "a module that is not loaded; "+why
			r.Fix = "modprobe " + module + ", and add it to /etc/modules-load.d/cluster.conf"
		default:
			r.Status, r.Detail = need, "not in this kernel; "+why
			r.Fix = "use a kernel with " + config
		}
		return r
	}
	filesystems, _ := os.ReadFile("/proc/filesystems")
	return []Result{
		feature("overlay filesystem", "CONFIG_OVERLAY_FS", "overlay", strings.Contains(string(filesystems), "\toverlay\n"), Error,
			"containerd's snapshotter needs it"),
		feature("br_netfilter", "CONFIG_BRIDGE_NETFILTER", "br_netfilter", exists("/proc/sys/net/bridge/bridge-nf-call-iptables"), Error,
			"pod traffic on the CNI bridge must pass the firewall for services to work"),
		feature("bridge", "CONFIG_BRIDGE", "bridge", exists("/sys/module/bridge") || exists("/sys/class/net/cni0/bridge"), Error,
			"the CNI bridge plugin needs it"),
		feature("vxlan", "CONFIG_VXLAN", "vxlan", exists("/sys/module/vxlan"), Warning,
			"flannel's default vxlan backend needs it (or use --flannel-backend host-gw)"),
		feature("nf_conntrack", "CONFIG_NF_CONNTRACK", "nf_conntrack", exists("/proc/sys/net/netfilter/nf_conntrack_max"), Error,
			"kube-proxy and flannel's NAT need connection tracking"),
	}
}

func cgroups() Result {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		have := strings.Fields(string(b))
		var missing []string
		for _, c := range []string{"cpu", "memory", "pids", "cpuset"} {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return Result{Name: "cgroups", Status: Error, Detail: "cgroup v2 without the " + strings.Join(missing, ", ") + " controller(s)",
				Fix: "enable them in the kernel (cgroup_enable=… on its command line) and in the root's cgroup.subtree_control"}
		}
		return Result{Name: "cgroups", Status: OK, Detail: "v2 with cpu, memory, pids, cpuset"}
	}
	var missing []string
	for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"} {
		if !exists(filepath.Join("/sys/fs/cgroup", c)) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Result{Name: "cgroups", Status: Error, Detail: "cgroup v1 without the " + strings.Join(missing, ", ") + " hierarchy(ies)",
			Fix: "mount them under /sys/fs/cgroup, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"}
	}
	return Result{Name: "cgroups", Status: Warning, Detail: "v1: Kubernetes is dropping it; the kubelet runs with failCgroupV1=false",
		Fix: "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) when you can"}
}

func firewall(nftables bool) []Result {
	var rs []Result
	var missing []string
	for _, c := range []string{"iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		rs = append(rs, Result{Name: "iptables", Status: Error, Detail: "the node needs iptables on PATH (" + strings.Join(missing, ", ") + " missing) for kube-proxy and flannel",
			Fix: "install iptables (Debian/Ubuntu: apt install iptables), or add --disable-agent"})
	} else {
		mode := "legacy"
		if out, err := exec.Command("iptables", "--version").Output(); err == nil && strings.Contains(string(out), "nf_tables") {
			mode = "nf_tables"
		}
		rs = append(rs, Result{Name: "iptables", Status: OK, Detail: mode + " mode"})
	}
	nft := Result{Name: "nft", Status: OK, Detail: "present"}
	if _, err := exec.LookPath("nft"); err != nil {
		nft = Result{Name: "nft", Status: Warning, Detail: "not on PATH; needed only for --kube-proxy-arg=proxy-mode=nftables",
			Fix: "install nftables (Debian/Ubuntu: apt install nftables)"}
		if nftables {
			nft.Status, nft.Detail = Error, "kube-proxy's nftables mode needs nft on PATH"
		}
	}
	return append(rs, nft)
}

func forwarding() Result {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return Result{Name: "ip_forward", Status: Warning, Detail: err.Error(), Fix: "mount /proc with /proc/sys/net"}
	}
	if strings.TrimSpace(string(b)) == "1" {
		return Result{Name: "ip_forward", Status: OK, Detail: "on"}
	}
	return Result{Name: "ip_forward", Status: OK, Detail: "off now; the CNI bridge plugin turns it on for the first pod"}
}

func swap() Result {
	b, _ := os.ReadFile("/proc/swaps")
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) > 1 {
		return Result{Name: "swap", Status: Warning, Detail: fmt.Sprintf("%d swap device(s) active; the kubelet runs with failSwapOn=false and does not limit pods' swap", len(lines)-1),
			Fix: "swapoff -a, and remove swap from /etc/fstab"}
	}
	return Result{Name: "swap", Status: OK, Detail: "off"}
}

// Capability bits (linux/capability.h).
const (
	capNetAdmin    = 12
	capSysAdmin    = 21
	capSysResource = 24
)

func capabilities() Result {
	b, _ := os.ReadFile("/proc/self/status")
	var eff uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	for bit, name := range map[int]string{capSysAdmin: "CAP_SYS_ADMIN", capNetAdmin: "CAP_NET_ADMIN"} {
		if eff&(1<<bit) == 0 {
			return Result{Name: "capabilities", Status: Error, Detail: "no " + name + ": mounts, namespaces and interfaces need it",
				Fix: "run as root outside a restricted container (or a privileged one)"}
		}
	}
	if eff&(1<<capSysResource) == 0 {
		return Result{Name: "capabilities", Status: Warning, Detail: "no CAP_SYS_RESOURCE: containers cannot get a negative oom_score_adj (containerd restrict_oom_score_adj is set)",
			Fix: "run with CAP_SYS_RESOURCE (outside a restricted container)"}
	}
	return Result{Name: "capabilities", Status: OK}
}

func kmsg() Result {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		return Result{Name: "/dev/kmsg", Status: Warning, Detail: "not readable; the kubelet's OOM watcher cannot see kernel OOM kills", Fix: "make /dev/kmsg readable (in a container: --device /dev/kmsg)"}
	}
	f.Close()
	return Result{Name: "/dev/kmsg", Status: OK}
}

func securityModules() Result {
	if b, err := os.ReadFile("/sys/fs/selinux/enforce"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return Result{Name: "security modules", Status: Warning, Detail: "SELinux enforcing; containers run without SELinux labels (enable_selinux is off)",
			Fix: "set SELinux to permissive, or add a policy for containerd (container-selinux)"}
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(b)) == "Y" {
		if _, err := exec.LookPath("apparmor_parser"); err != nil {
			return Result{Name: "security modules", Status: Error, Detail: "AppArmor is on but apparmor_parser is missing: containerd cannot load its container profile",
				Fix: "install apparmor (Debian/Ubuntu: apt install apparmor)"}
		}
		return Result{Name: "security modules", Status: OK, Detail: "AppArmor (containerd loads its default profile)"}
	}
	return Result{Name: "security modules", Status: OK, Detail: "no SELinux or AppArmor enforcing"}
}

func portFree(p Port) Result {
	name := "port " + p.Address[strings.LastIndex(p.Address, ":")+1:]
	l, err := net.Listen("tcp", p.Address)
	if err == nil {
		l.Close()
		return Result{Name: name, Status: OK, Detail: "free for " + p.User}
	}
	fix := "stop what listens there (ss -ltnp 'sport = :" + p.Address[strings.LastIndex(p.Address, ":")+1:] + "')"
	if p.Flag != "" {
		fix += ", or move " + p.User + " with " + p.Flag
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return Result{Name: name, Status: Error, Detail: fmt.Sprintf("address %s is already in use (is another cluster or %s running?)", p.Address, p.User), Fix: fix}
	}
	return Result{Name: name, Status: Error, Detail: fmt.Sprintf("%s cannot listen on %s: %v", p.User, p.Address, err), Fix: "check " + p.Flag}
}

// Free space under the data dir: the kubelet starts evicting pods when
// its file system has less than 5% free.
const (
	minFreeBytes    = 512 << 20
	lowFreeBytes    = 2 << 30
	minFreeInodePct = 1
	lowFreeInodePct = 10
)

func diskSpace(dataDir string) []Result {
	dir := dataDir
	for !exists(dir) && filepath.Dir(dir) != dir {
		dir = filepath.Dir(dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return []Result{{Name: "data dir", Status: Error, Detail: fmt.Sprintf("%s: %v", dataDir, err), Fix: "choose another --data-dir"}}
	}
	free := st.Bavail * uint64(st.Bsize)
	space := Result{Name: "free space", Status: OK, Detail: fmt.Sprintf("%s free under %s", size(free), dataDir)}
	switch {
	case free < minFreeBytes:
		space.Status, space.Detail = Error, fmt.Sprintf("only %s free under %s; images, pods and the datastore need at least %s", size(free), dataDir, size(minFreeBytes))
		space.Fix = "free space there, or choose a --data-dir on a larger file system"
	case free < lowFreeBytes:
		space.Status, space.Detail = Warning, fmt.Sprintf("%s free under %s; less than %s leaves little for images and pods", size(free), dataDir, size(lowFreeBytes))
		space.Fix = "free space there, or choose a --data-dir on a larger file system"
	}
	inodes := Result{Name: "free inodes", Status: OK}
	if st.Files > 0 { // some file systems (btrfs) report none
		pct := st.Ffree * 100 / st.Files
		inodes.Detail = fmt.Sprintf("%d%% free under %s", pct, dataDir)
		switch {
		case pct < minFreeInodePct:
			inodes.Status, inodes.Fix = Error, "remove files there, or choose a --data-dir on another file system"
		case pct < lowFreeInodePct:
			inodes.Status, inodes.Fix = Warning, "remove files there, or choose a --data-dir on another file system"
		}
	}
	return []Result{space, inodes}
}

func size(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%d MiB", b>>20)
	}
}
