// Package noleak keeps the cluster's internal addresses on the node: a
// packet to the service network that kube-proxy did not translate, or to a
// pod address in no node's podCIDR, is refused here instead of following
// the default route off the machine (where whatever is out there might
// answer, and where every pod DNS query went while no DNS served the
// cluster DNS address).
//
//   - Service CIDR: what is still addressed to the service network after
//     kube-proxy's DNAT is rejected on the forward (pods) and output (the
//     host) paths: TCP with a reset, anything else with ICMP port
//     unreachable, so a connection — or a DNS lookup — is refused at once.
//     With kube-proxy in iptables mode that is a filter chain jumped to
//     first; in nftables mode a table of ours whose chains run just before
//     kube-proxy's filter chains (which drop, silently, what goes to an
//     unallocated ClusterIP). ICMP destination-unreachable is taken out of
//     the kernel's per-peer ICMP rate limit (net.ipv4.icmp_ratemask), or a
//     resolver's later queries would wait out their timeouts; the global
//     limit (icmp_msgs_per_sec) still applies.
//   - Cluster CIDR: an unreachable route for the whole pod network. Each
//     node's podCIDR has a more specific route (cni0 here, flannel.1 or
//     the peer for other nodes; a user's CNI adds its own), so only
//     addresses of no node match it.
//
// Both are re-checked periodically: other programs rewrite firewalls.
package noleak

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cluster-io/cluster/agent/netrules"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("noleak")

// Chain is the iptables filter chain of the rules, and Table the nftables
// table; the kill-all scripts remove both.
const (
	Chain = "CLUSTER-NOLEAK"
	Table = "cluster-noleak"
)

// RouteProtocol marks our routes, so `ip route flush proto 239` (the
// kill-all scripts) removes exactly them.
const RouteProtocol = 239

// Config names the networks to keep.
type Config struct {
	ServiceCIDR string
	ClusterCIDR string
	// NFTables: kube-proxy runs in nftables mode.
	NFTables bool
	// Every is how often the rules are checked again (default 30s).
	Every time.Duration
}

// Run installs the rules, closes ready, and keeps them until ctx ends. The
// rules stay when it returns: a restarted node must not leak meanwhile.
func Run(ctx context.Context, c Config, ready chan<- struct{}) error {
	// With nftables underneath (nft, or iptables-nft) a tick whose ruleset
	// generation is the one of the last check skips the listing: no table
	// changed since.
	gens := netrules.NewGenerations(c.NFTables || netrules.NFTablesBackend(ctx))
	gen, _ := gens.Changed()
	if err := Ensure(c); err != nil {
		return err
	}
	gens.Checked(gen)
	// What an earlier start in the other kube-proxy mode left: once.
	if c.NFTables {
		removeIPTables()
	} else {
		removeNFTables()
	}
	log.Infof("traffic to service IPs kube-proxy does not serve (%s) and to pod IPs of no node (%s) is refused on this node", c.ServiceCIDR, c.ClusterCIDR)
	close(ready)
	every := c.Every
	if every == 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			gen, changed := gens.Changed()
			if err := ensure(c, changed); err != nil {
				log.Warnf("re-check: %v", err)
				continue
			}
			gens.Checked(gen)
		}
	}
}

// Ensure installs whatever is missing; it is idempotent.
func Ensure(c Config) error { return ensure(c, true) }

// ensure checks the firewall rules only when rules is true (the ruleset may
// have changed); the route and the ICMP rate mask are checked every time.
func ensure(c Config, rules bool) error {
	_, svc, err := net.ParseCIDR(c.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("service CIDR %q: %w", c.ServiceCIDR, err)
	}
	_, pods, err := net.ParseCIDR(c.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("cluster CIDR %q: %w", c.ClusterCIDR, err)
	}
	if rules {
		ensureRules := ensureIPTables
		if c.NFTables {
			ensureRules = ensureNFTables
		}
		if err := ensureRules(svc.String()); err != nil {
			return fmt.Errorf("service network rules: %w", err)
		}
	}
	if err := unlimitUnreachable(); err != nil {
		return err
	}
	if err := netlink.RouteReplace(&netlink.Route{Dst: pods, Type: unix.RTN_UNREACHABLE, Protocol: RouteProtocol}); err != nil {
		return fmt.Errorf("unreachable route for %s: %w", pods, err)
	}
	return nil
}

func ensureIPTables(serviceCIDR string) error {
	comment := []string{"-m", "comment", "--comment", "cluster: service IP that kube-proxy did not translate"}
	rules := [][]string{
		append([]string{"-d", serviceCIDR, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"}, comment...),
		append([]string{"-d", serviceCIDR, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"}, comment...),
	}
	// One listing of the filter table answers "does the chain exist", "is
	// it whole" and "are the jumps first": each iptables run costs ~10 ms
	// of CPU, and this runs every 30 s.
	filter, err := netrules.List(context.Background(), "filter")
	if err != nil {
		return err
	}
	mendChain := !slices.Contains(filter, "-N "+Chain) || len(netrules.Rules(filter, Chain)) != len(rules)
	jump := []string{"-m", "comment", "--comment", jumpComment, "-j", Chain}
	var mendJumps []string
	for _, from := range []string{"FORWARD", "OUTPUT"} {
		// First in the chain: an earlier ACCEPT (flannel's for the pod
		// network) must not let untranslated service traffic through.
		if r := netrules.Rules(filter, from); len(r) == 0 || r[0] != "-A "+from+" -m comment --comment \""+jumpComment+"\" -j "+Chain {
			mendJumps = append(mendJumps, from)
		}
	}
	if !mendChain && len(mendJumps) == 0 {
		return nil
	}
	// A handle only to mend: making one runs `iptables --version`.
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return err
	}
	if mendChain {
		if err := ipt.ClearChain("filter", Chain); err != nil { // creates it if missing
			return err
		}
		for _, r := range rules {
			if err := ipt.Append("filter", Chain, r...); err != nil {
				return err
			}
		}
	}
	for _, from := range mendJumps {
		for {
			if err := ipt.Delete("filter", from, jump...); err != nil {
				break // no more copies
			}
		}
		if err := ipt.Insert("filter", from, 1, jump...); err != nil {
			return err
		}
	}
	return nil
}

const jumpComment = "cluster: keep cluster addresses on the node"

func removeIPTables() {
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return
	}
	for _, from := range []string{"FORWARD", "OUTPUT"} {
		for ipt.Delete("filter", from, "-m", "comment", "--comment", jumpComment, "-j", Chain) == nil {
		}
	}
	if ok, _ := ipt.ChainExists("filter", Chain); ok {
		_ = ipt.ClearAndDeleteChain("filter", Chain)
	}
}

// nftRules is the table, replaced as a whole: its chains run at priority
// filter-5, after DNAT (-100) and before kube-proxy's filter chains (0).
func nftRules(serviceCIDR string) string {
	chain := func(hook string) string {
		return fmt.Sprintf(`	chain %[1]s {
		type filter hook %[1]s priority filter - 5; policy accept;
		ip daddr %[2]s meta l4proto tcp counter reject with tcp reset comment "service IP that kube-proxy did not translate"
		ip daddr %[2]s counter reject with icmp type port-unreachable comment "service IP that kube-proxy did not translate"
	}
`, hook, serviceCIDR)
	}
	return "add table ip " + Table + "\ndelete table ip " + Table + "\ntable ip " + Table + " {\n" + chain("forward") + chain("output") + "}\n"
}

func ensureNFTables(serviceCIDR string) error {
	if out, err := exec.Command("nft", "list", "table", "ip", Table).Output(); err == nil && strings.Contains(string(out), serviceCIDR) {
		return nil // in place (and its counters kept)
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftRules(serviceCIDR))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func removeNFTables() {
	if _, err := exec.LookPath("nft"); err == nil {
		_ = exec.Command("nft", "delete", "table", "ip", Table).Run()
	}
}

// unlimitUnreachable clears ICMP destination unreachable (type 3) from the
// per-peer ICMP rate limit: a pod whose lookups or connections are refused
// must hear every refusal, not the first six and then silence.
func unlimitUnreachable() error {
	const path = "/proc/sys/net/ipv4/icmp_ratemask"
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("icmp_ratemask: %w", err)
	}
	mask, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return fmt.Errorf("icmp_ratemask %q: %w", b, err)
	}
	if mask&(1<<3) == 0 {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.FormatUint(mask&^(1<<3), 10)), 0o644); err != nil {
		return fmt.Errorf("icmp_ratemask: %w", err)
	}
	return nil
}
