package flannel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cluster-io/cluster/agent/netrules"
)

// In nftables mode flannel's own rule checks run every resync period: k3s's
// 60 s for the masquerade rules and 50 s for the forward rules. In iptables
// mode iptablesRules sets the rules up and iptablesGuard keeps them.
const (
	masqResync       = 60
	forwardResync    = 50
	guardEvery       = time.Minute
	flannelChainMark = "FLANNEL-" // FLANNEL-POSTRTG (nat), FLANNEL-FWD (filter) and the jumps to them
)

// iptablesGuard keeps flannel's iptables rules in place with one listing
// of the nat table and one of the filter table a minute. Flannel checks
// each of its rules with two iptables runs (does the chain exist, does the
// rule): ~17 runs a minute at the periods above, each ~10 ms of CPU, the
// most iptables an idle node ran. The guard compares flannel's lines (those
// naming a FLANNEL- chain) with the ones it saw after the setup and, when
// they differ (a table flushed, a rule deleted), sets the rules up again at
// once, as flannel's own check would have within its period. With
// iptables-nft a tick whose nftables generation is the one of the last
// check lists nothing: no table changed since.
type iptablesGuard struct {
	every time.Duration
	list  func(ctx context.Context, table string) ([]string, error) // netrules.List
	// setup installs flannel's rules; anything it starts ends with ctx.
	// again is true when the guard found the rules changed.
	setup func(ctx context.Context, again bool) error
	// gens skips a tick's listings while no table changed since the last
	// check (iptables-nft); nil lists every tick.
	gens *netrules.Generations
}

// start sets the rules up and then guards them until ctx ends.
func (g *iptablesGuard) start(ctx context.Context) error {
	setupCtx, stop := context.WithCancel(ctx)
	if err := g.setup(setupCtx, false); err != nil {
		stop()
		return err
	}
	gen, _ := g.gens.Changed()
	want, err := g.flannelLines(ctx)
	if err != nil {
		stop()
		return fmt.Errorf("flannel: check iptables rules: %w", err)
	}
	g.gens.Checked(gen)
	go func() {
		defer func() { stop() }()
		tick := time.NewTicker(g.every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			gen, changed := g.gens.Changed()
			if !changed {
				continue
			}
			got, err := g.flannelLines(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warnf("check iptables rules: %v", err)
				}
				continue
			}
			if slices.Equal(got, want) {
				g.gens.Checked(gen)
				continue
			}
			log.Infof("iptables rules changed (flannel's lines: %d, were %d); setting them up again", len(got), len(want))
			stop()
			setupCtx, stop = context.WithCancel(ctx)
			if err := g.setup(setupCtx, true); err != nil {
				log.Errorf("set up iptables rules again: %v", err)
				continue // want stays: the next tick tries again
			}
			gen, _ = g.gens.Changed()
			if now, err := g.flannelLines(ctx); err == nil {
				want = now
				g.gens.Checked(gen)
			}
		}
	}()
	return nil
}

// flannelLines lists flannel's rules in the nat and filter tables, in order.
func (g *iptablesGuard) flannelLines(ctx context.Context) ([]string, error) {
	var lines []string
	for _, table := range []string{"nat", "filter"} {
		out, err := g.list(ctx, table)
		if err != nil {
			return nil, fmt.Errorf("list the %s table: %w", table, err)
		}
		for _, l := range out {
			if strings.Contains(l, flannelChainMark) {
				lines = append(lines, table+" "+l)
			}
		}
	}
	return lines, nil
}
