package flannel

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"

	"github.com/cluster-io/cluster/agent/netrules"
)

// setupEnv makes the test binary, started again in a network namespace of
// its own, set flannel's rules up one way and print flannel's lines.
const setupEnv = "CLUSTER_TEST_FLANNEL_IPTABLES"

func TestMain(m *testing.M) {
	if how := os.Getenv(setupEnv); how != "" {
		if err := setupAndList(how); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// setupAndList runs in the namespace. "flannel": flannel's own manager sets
// the rules up for 10.42.0.0/24. "ours": iptablesRules does, first for
// 10.42.7.0/24 and then for 10.42.0.0/24 (a node given another subnet),
// twice (a restart).
func setupAndList(how string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends flannel's checking loops
	network, subnet := cidr("10.42.0.0/16"), cidr("10.42.0.0/24")
	switch how {
	case "flannel":
		tm := &iptables.IPTablesManager{}
		if err := tm.Init(ctx); err != nil {
			return err
		}
		l := &lease.Lease{Subnet: subnet}
		if err := tm.SetupAndEnsureMasqRules(ctx, network, ip.IP4Net{}, ip.IP4Net{}, ip.IP6Net{}, ip.IP6Net{}, ip.IP6Net{}, l, 3600, false); err != nil {
			return err
		}
		tm.SetupAndEnsureForwardRules(ctx, network, ip.IP6Net{}, 3600)
	case "ours":
		for _, s := range []string{"10.42.7.0/24", subnet.String(), subnet.String()} {
			r, err := newIPTablesRules(network.String(), s)
			if err != nil {
				return err
			}
			if err := r.setup(ctx, netrules.List, netrules.Restore); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s=%q: want flannel or ours", setupEnv, how)
	}
	for _, table := range []string{"nat", "filter"} {
		lines, err := netrules.List(ctx, table)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if strings.Contains(l, flannelChainMark) {
				fmt.Println(table, l)
			}
		}
	}
	return nil
}

func cidr(s string) ip.IP4Net {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return ip.FromIPNet(n)
}

// Our setup must leave exactly the rules flannel's own leaves, in the same
// order, each once: checked in network namespaces of their own, so the
// host's tables stay untouched.
func TestIPTablesRulesMatchFlannel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to set rules up in new network namespaces (CI runs as root)")
	}
	lines := map[string][]string{}
	for _, how := range []string{"flannel", "ours"} {
		cmd := exec.Command("unshare", "--net", os.Args[0])
		cmd.Env = append(os.Environ(), setupEnv+"="+how)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if exit, ok := err.(*exec.ExitError); ok {
				stderr = exit.Stderr
			}
			t.Fatalf("%s setup: %v\n%s", how, err, stderr)
		}
		lines[how] = strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	if len(lines["flannel"]) < 10 {
		t.Fatalf("flannel's setup left %d lines, want its 2 chains, 2 jumps and 8 rules:\n%s", len(lines["flannel"]), strings.Join(lines["flannel"], "\n"))
	}
	if !slices.Equal(lines["ours"], lines["flannel"]) {
		t.Errorf("rules differ\nflannel's:\n%s\nours:\n%s", strings.Join(lines["flannel"], "\n"), strings.Join(lines["ours"], "\n"))
	}
}

func TestIPTablesRulesPayload(t *testing.T) {
	r := iptablesRules{network: "10.42.0.0/16", subnet: "10.42.3.0/24", randomFully: true}
	natJump := `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`
	fwdJump := `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`
	for _, tc := range []struct {
		name      string
		current   map[string][]string
		wantJumps int
	}{
		{"fresh tables", map[string][]string{"nat": {"-P POSTROUTING ACCEPT"}, "filter": {"-P FORWARD ACCEPT"}}, 2},
		{"jumps there", map[string][]string{"nat": {"-N FLANNEL-POSTRTG", natJump}, "filter": {"-N FLANNEL-FWD", fwdJump}}, 0},
		{"nat jump there", map[string][]string{"nat": {natJump}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := r.payload(tc.current)
			jumps := strings.Count(p, natJump+"\n") + strings.Count(p, fwdJump+"\n")
			if jumps != tc.wantJumps {
				t.Errorf("%d jumps, want %d:\n%s", jumps, tc.wantJumps, p)
			}
			for _, want := range []string{
				"*nat\n:FLANNEL-POSTRTG - [0:0]\n", "*filter\n:FLANNEL-FWD - [0:0]\n",
				`-A FLANNEL-POSTRTG -s 10.42.3.0/24 -d 10.42.0.0/16 -m comment --comment "flanneld masq" -j RETURN`,
				`-j MASQUERADE --random-fully`,
				`-A FLANNEL-FWD -d 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
			} {
				if !strings.Contains(p, want) {
					t.Errorf("payload lacks %q:\n%s", want, p)
				}
			}
			if n := strings.Count(p, "COMMIT\n"); n != 2 {
				t.Errorf("%d COMMITs, want one per table:\n%s", n, p)
			}
		})
	}
}
