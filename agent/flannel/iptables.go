package flannel

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/flannel-io/flannel/pkg/trafficmngr"
)

// iptablesRules are flannel's IPv4 rules in iptables mode, as flannel's
// IPTablesManager writes them: its masquerade rules (nat) and its forward
// rules (filter), each in a chain of flannel's with a jump from the built-in
// chain. Flannel installs them a rule at a time, checking each chain and
// rule first: ~45 iptables runs, 0.15–0.25 s of every start and restart before
// the node is Ready. Here they go in with one listing of each table and one
// iptables-restore. TestIPTablesRulesMatchFlannel checks, in a network
// namespace, that the result is the lines flannel's own setup leaves.
type iptablesRules struct {
	network     string // the cluster's pod CIDR
	subnet      string // this node's
	randomFully bool   // MASQUERADE --random-fully (iptables ≥ 1.6.2), as flannel decides it
}

// flannelTable is what flannel keeps in one table.
type flannelTable struct {
	table string
	chain string   // flannel's chain, flushed and filled on every setup
	jump  string   // the built-in chain's rule to it, as `iptables -S` prints it
	rules []string // chain's rules, in order
}

// newIPTablesRules asks iptables, as flannel does, whether MASQUERADE
// takes --random-fully.
func newIPTablesRules(network, subnet string) (iptablesRules, error) {
	ipt, err := iptables.New()
	if err != nil {
		return iptablesRules{}, fmt.Errorf("iptables: %w", err)
	}
	return iptablesRules{network: network, subnet: subnet, randomFully: ipt.HasRandomFully()}, nil
}

func (r iptablesRules) tables() []flannelTable {
	const masqComment, fwdComment = `-m comment --comment "flanneld masq"`, `-m comment --comment "flanneld forward"`
	masq := "MASQUERADE"
	if r.randomFully {
		masq += " --random-fully"
	}
	return []flannelTable{{
		table: "nat",
		chain: "FLANNEL-POSTRTG",
		jump:  "-A POSTROUTING " + masqComment + " -j FLANNEL-POSTRTG",
		rules: []string{
			// kube-proxy's marked packets: it masquerades them itself
			"-A FLANNEL-POSTRTG -m mark --mark " + trafficmngr.KubeProxyMark + " " + masqComment + " -j RETURN",
			// pod to pod stays unNATed
			"-A FLANNEL-POSTRTG -s " + r.subnet + " -d " + r.network + " " + masqComment + " -j RETURN",
			"-A FLANNEL-POSTRTG -s " + r.network + " -d " + r.subnet + " " + masqComment + " -j RETURN",
			"-A FLANNEL-POSTRTG ! -s " + r.network + " -d " + r.subnet + " " + masqComment + " -j RETURN",
			// pods to the world, but not multicast; the host to pods
			"-A FLANNEL-POSTRTG -s " + r.network + " ! -d 224.0.0.0/4 " + masqComment + " -j " + masq,
			"-A FLANNEL-POSTRTG ! -s " + r.network + " -d " + r.network + " " + masqComment + " -j " + masq,
		},
	}, {
		table: "filter",
		chain: "FLANNEL-FWD",
		jump:  "-A FORWARD " + fwdComment + " -j FLANNEL-FWD",
		rules: []string{
			"-A FLANNEL-FWD -s " + r.network + " " + fwdComment + " -j ACCEPT",
			"-A FLANNEL-FWD -d " + r.network + " " + fwdComment + " -j ACCEPT",
		},
	}}
}

// payload is the iptables-restore input that sets the rules up over the
// tables' current lines (`iptables -S`, by table). Declaring a chain under
// --noflush empties it (or makes it), so an older subnet's rules go too; a
// jump already there stays where it is.
func (r iptablesRules) payload(current map[string][]string) string {
	var b strings.Builder
	for _, t := range r.tables() {
		fmt.Fprintf(&b, "*%s\n:%s - [0:0]\n", t.table, t.chain)
		if !slices.Contains(current[t.table], t.jump) {
			b.WriteString(t.jump + "\n")
		}
		for _, l := range t.rules {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// setup lists the tables and restores the rules: three iptables runs.
func (r iptablesRules) setup(ctx context.Context, list func(ctx context.Context, table string) ([]string, error), restore func(ctx context.Context, payload string) error) error {
	current := map[string][]string{}
	for _, t := range r.tables() {
		lines, err := list(ctx, t.table)
		if err != nil {
			return fmt.Errorf("flannel: list the %s table: %w", t.table, err)
		}
		current[t.table] = lines
	}
	if err := restore(ctx, r.payload(current)); err != nil {
		return fmt.Errorf("flannel: set up iptables rules: %w", err)
	}
	return nil
}
