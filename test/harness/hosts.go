package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Network is a set of test "hosts" on one machine, for tests that need
// several nodes: each host is a network namespace with a veth on a shared
// bridge, and a mount namespace of its own that lives as long as the host
// (so a node restarted on it finds its mounts, as on a real machine), with
// sysfs for its network namespace and the machine's cgroup tree.
//
// Nothing leaves the machine: the hosts' default route points at the
// machine's end of the bridge, which drops whatever it would forward
// elsewhere and counts it (Leaked), so a test can assert that a node sent
// nothing off its network.
type Network struct {
	t      *testing.T
	prefix string
	subnet string // first three octets, e.g. "10.99.0"
	bridge string
	runDir string // /run/<prefix>: the hosts' mount namespace files
	hosts  []*Host
	// leakBase is the counter after the self-check in the first AddHost.
	leakBase int
}

// Host is one test host.
type Host struct {
	Name  string // network namespace name
	IP    string
	mntNS string
	utsNS string // its own hostname (the host's name), as a machine has
}

// NewNetwork makes the bridge (address <subnet>.1/24, so the test process
// reaches the hosts) and registers its removal. prefix (≤ 8 characters)
// names every interface, namespace and directory it makes.
func NewNetwork(t *testing.T, prefix, subnet string) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("several test hosts need root (CI runs as root)")
	}
	n := &Network{t: t, prefix: prefix, subnet: subnet, bridge: prefix + "-br", runDir: "/run/" + prefix}
	n.teardown(false) // what a killed earlier run left behind
	if routes, _ := exec.Command("ip", "route", "show", subnet+".0/24").Output(); len(strings.TrimSpace(string(routes))) > 0 {
		t.Fatalf("%s.0/24 is already routed on this machine: %s", subnet, routes)
	}
	t.Cleanup(func() { n.teardown(true) })
	n.sh(fmt.Sprintf(`
ip link add %[1]s type bridge
ip addr add %[2]s.1/24 dev %[1]s
ip link set %[1]s up
iptables -w -I FORWARD 1 -i %[1]s ! -o %[1]s -j DROP
iptables -w -I FORWARD 1 -i %[1]s -o %[1]s -j ACCEPT
iptables -w -t raw -I PREROUTING 1 -i %[1]s ! -d %[2]s.0/24 -m comment --comment %[1]s-leak
mkdir -p %[3]s
mount --bind %[3]s %[3]s
mount --make-private %[3]s
mkdir -p %[3]s/cgroup
mount --rbind /sys/fs/cgroup %[3]s/cgroup
`, n.bridge, subnet, n.runDir))
	return n
}

// AddHost makes host number len(hosts)+10 of the subnet, named <prefix>-<name>.
func (n *Network) AddHost(name string) *Host {
	n.t.Helper()
	i := len(n.hosts)
	h := &Host{Name: n.prefix + "-" + name, IP: fmt.Sprintf("%s.%d", n.subnet, 10+i)}
	h.mntNS = filepath.Join(n.runDir, h.Name+".mnt")
	h.utsNS = filepath.Join(n.runDir, h.Name+".uts")
	veth := fmt.Sprintf("%s%dh", n.prefix, i)
	n.sh(fmt.Sprintf(`
ip netns add %[1]s
ip link add %[2]s type veth peer name eth0 netns %[1]s
ip link set %[2]s master %[3]s up
ip -n %[1]s addr add %[4]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s link set lo up
ip -n %[1]s route add default via %[5]s.1
touch %[6]s
unshare --mount=%[6]s --propagation private nsenter --net=/run/netns/%[1]s sh -c 'mount -t sysfs sysfs /sys && mount --rbind %[7]s/cgroup /sys/fs/cgroup'
touch %[8]s
unshare --uts=%[8]s hostname %[1]s
`, h.Name, veth, n.bridge, h.IP, n.subnet, h.mntNS, n.runDir, h.utsNS))
	n.hosts = append(n.hosts, h)
	if len(n.hosts) == 1 {
		n.checkLeakCounter(h)
	}
	return h
}

// checkLeakCounter proves the leak counter counts: one UDP packet to a
// documentation address (TEST-NET-2), which the machine drops, must show.
func (n *Network) checkLeakCounter(h *Host) {
	n.t.Helper()
	if out, err := h.Command("bash", "-c", "echo probe > /dev/udp/198.51.100.1/9").CombinedOutput(); err != nil {
		n.t.Fatalf("send the leak probe: %v\n%s", err, out)
	}
	got, err := n.Leaked()
	if err != nil || got != 1 {
		n.t.Fatalf("the leak counter saw %d packets of the probe, want 1 (%v)", got, err)
	}
	n.leakBase = 1
}

// Command runs name with args on the host (its network and mount namespaces).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.Name, "--mount=" + h.mntNS, "--uts=" + h.utsNS, "--", name}, args...)...)
}

// Mounts returns the host's mount points below dir.
func (h *Host) Mounts(dir string) []string {
	out, _ := h.Command("cat", "/proc/self/mounts").Output()
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			found = append(found, f[1])
		}
	}
	return found
}

// Leaked is how many packets the hosts sent to the machine for addresses
// outside their network: what a node would have sent off the machine.
func (n *Network) Leaked() (int, error) {
	out, err := exec.Command("iptables", "-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n").Output()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, n.bridge+"-leak") {
			var packets int
			_, err := fmt.Sscan(line, &packets)
			return packets - n.leakBase, err
		}
	}
	return 0, fmt.Errorf("no %s-leak counter in the raw table", n.bridge)
}

func (n *Network) sh(script string) {
	n.t.Helper()
	if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
		n.t.Fatalf("set up test hosts: %v\n%s\n%s", err, script, out)
	}
}

// teardown removes every namespace, interface, rule and mount the network
// made (best effort when cleaning up after another run).
func (n *Network) teardown(report bool) {
	script := fmt.Sprintf(`
for ns in $(ip netns list | awk '{print $1}' | grep '^%[1]s-'); do
  [ -f %[3]s/$ns.mnt ] && umount %[3]s/$ns.mnt
  [ -f %[3]s/$ns.uts ] && umount %[3]s/$ns.uts
  ip netns del $ns
done
ip link del %[2]s 2>/dev/null
while iptables -w -D FORWARD -i %[2]s ! -o %[2]s -j DROP 2>/dev/null; do :; done
while iptables -w -D FORWARD -i %[2]s -o %[2]s -j ACCEPT 2>/dev/null; do :; done
iptables -w -t raw -S PREROUTING | grep -- '--comment %[2]s-leak' | sed 's/^-A/-D/' | while read -r rule; do eval iptables -w -t raw "$rule"; done
if mountpoint -q %[3]s/cgroup; then umount -R %[3]s/cgroup; fi
if mountpoint -q %[3]s; then umount %[3]s; fi
rm -rf %[3]s
true
`, n.prefix, n.bridge, n.runDir)
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if report && err != nil {
		n.t.Errorf("remove test hosts: %v\n%s", err, out)
	}
}
