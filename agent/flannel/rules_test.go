package flannel

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster-io/cluster/agent/netrules"
)

// fakeTables is iptables for the guard: tables of rule lines, and a setup
// that writes flannel's lines into them as flannel's would.
type fakeTables struct {
	mu       sync.Mutex
	tables   map[string][]string
	listErr  error
	lists    int
	setups   []bool            // each setup's again
	setupCtx []context.Context // each setup's ctx
	gen      uint32            // the ruleset's generation: each edit and setup moves it
}

var flannelRules = map[string][]string{
	"nat":    {"-N FLANNEL-POSTRTG", "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG", "-A FLANNEL-POSTRTG -s 10.42.0.0/16 -j RETURN"},
	"filter": {"-N FLANNEL-FWD", "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD", "-A FLANNEL-FWD -s 10.42.0.0/16 -j ACCEPT"},
}

func (f *fakeTables) list(_ context.Context, table string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	return append([]string(nil), f.tables[table]...), nil
}

func (f *fakeTables) setup(ctx context.Context, again bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups = append(f.setups, again)
	f.setupCtx = append(f.setupCtx, ctx)
	f.gen++
	for table, rules := range flannelRules {
		var kept []string
		for _, l := range f.tables[table] {
			if !strings.Contains(l, "FLANNEL-") {
				kept = append(kept, l)
			}
		}
		f.tables[table] = append(kept, rules...)
	}
	return nil
}

func (f *fakeTables) edit(fn func(map[string][]string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.tables)
	f.gen++
}

func (f *fakeTables) generation() (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen, nil
}

func (f *fakeTables) state() (lists int, setups []bool, ctxs []context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists, append([]bool(nil), f.setups...), append([]context.Context(nil), f.setupCtx...)
}

// waitLists waits until the guard has listed n more tables.
func (f *fakeTables) waitLists(t *testing.T, n int) {
	t.Helper()
	start, _, _ := f.state()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if lists, _, _ := f.state(); lists >= start+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard listed fewer than %d tables in 5 s", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIPTablesGuard(t *testing.T) {
	f := &fakeTables{tables: map[string][]string{
		"nat":    {"-P PREROUTING ACCEPT", "-N KUBE-SERVICES"},
		"filter": {"-P FORWARD ACCEPT", "-A FORWARD -j CLUSTER-NOLEAK"},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &iptablesGuard{every: time.Millisecond, list: f.list, setup: f.setup}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, setups, _ := f.state(); len(setups) != 1 || setups[0] {
		t.Fatalf("setups after start: %v, want one first setup", setups)
	}

	// Other rules come and go (kube-proxy's, ours): nothing to do.
	f.edit(func(m map[string][]string) { m["nat"] = append(m["nat"], "-A KUBE-SERVICES -j KUBE-NODEPORTS") })
	f.waitLists(t, 6)
	if _, setups, _ := f.state(); len(setups) != 1 {
		t.Fatalf("set up again after a change to other rules: %v", setups)
	}

	// A failed listing is no reason to set up again.
	f.edit(func(map[string][]string) { f.listErr = errors.New("xtables lock held") })
	f.waitLists(t, 3)
	f.edit(func(map[string][]string) { f.listErr = nil })
	if _, setups, _ := f.state(); len(setups) != 1 {
		t.Fatalf("set up again after a failed listing: %v", setups)
	}

	// A flushed filter table: flannel's rules are set up again, and the
	// first setup's checking loops end.
	f.edit(func(m map[string][]string) { m["filter"] = []string{"-P FORWARD ACCEPT"} })
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, setups, ctxs := f.state()
		if len(setups) == 2 {
			if !setups[1] {
				t.Fatal("the second setup was not told it is one again")
			}
			if ctxs[0].Err() == nil {
				t.Fatal("the first setup's context is still live after the rules were set up again")
			}
			break
		}
		if len(setups) > 2 || time.Now().After(deadline) {
			t.Fatalf("setups after a flush: %v, want 2", setups)
		}
		time.Sleep(time.Millisecond)
	}
	// The new rules are the ones guarded from now on: no third setup.
	f.waitLists(t, 6)
	_, setups, ctxs := f.state()
	if len(setups) != 2 {
		t.Fatalf("setups once the rules are back: %v, want 2", setups)
	}
	cancel()
	select {
	case <-ctxs[1].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the setup's context outlived the guard's")
	}
}

func TestIPTablesGuardStartErrors(t *testing.T) {
	f := &fakeTables{tables: map[string][]string{}, listErr: errors.New("iptables: not found")}
	g := &iptablesGuard{every: time.Hour, list: f.list, setup: f.setup}
	err := g.start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "check iptables rules") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("start with a failing listing: %v", err)
	}
	if _, _, ctxs := f.state(); len(ctxs) != 1 || ctxs[0].Err() == nil {
		t.Fatal("the setup's loops outlive a failed start")
	}
}

// With the ruleset's generation (iptables-nft), a tick lists only when a
// table changed since the last check.
func TestIPTablesGuardGeneration(t *testing.T) {
	f := &fakeTables{tables: map[string][]string{"nat": {"-P PREROUTING ACCEPT"}, "filter": {"-P FORWARD ACCEPT"}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &iptablesGuard{every: time.Millisecond, list: f.list, setup: f.setup, gens: netrules.GenerationsFrom(f.generation)}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := func(what string) {
		t.Helper()
		before, _, _ := f.state()
		time.Sleep(50 * time.Millisecond) // ~50 ticks
		if lists, _, _ := f.state(); lists != before {
			t.Fatalf("%s: %d listings in 50 ticks of an unchanged ruleset, want none", what, lists-before)
		}
	}
	if lists, _, _ := f.state(); lists != 2 {
		t.Fatalf("listings after start: %d, want 2 (nat, filter)", lists)
	}
	quiet("after start")

	// Another rule changes: one check (two listings), no setup.
	f.edit(func(m map[string][]string) { m["nat"] = append(m["nat"], "-N KUBE-SERVICES") })
	f.waitLists(t, 2)
	quiet("after a change to other rules")
	if _, setups, _ := f.state(); len(setups) != 1 {
		t.Fatalf("setups after a change to other rules: %v, want the first only", setups)
	}

	// Flannel's rule deleted: set up again, checked, then quiet.
	f.edit(func(m map[string][]string) { m["filter"] = m["filter"][:1] })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, setups, _ := f.state(); len(setups) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flannel's rules were not set up again after one was deleted")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the check after the setup
	quiet("after the rules were set up again")
}
