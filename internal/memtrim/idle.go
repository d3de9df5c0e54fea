package memtrim

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/cluster-io/cluster/internal/procs"
)

// StartGOGC makes the collector run when the heap has grown by half since
// the last collection, not doubled (Go's GOGC=100): an idle server holds
// ~70 MB less for a little more CPU.
const StartGOGC = 50

// SetStartGC sets StartGOGC unless GOGC is in the environment, which wins
// as for any Go program (GOGC=100 restores Go's default). Once the start is
// over, Idle.Run sets the target for what the process runs (NodeIdleGOGC,
// ControlPlaneIdleGOGC).
func SetStartGC() {
	if !userGOGC() {
		debug.SetGCPercent(StartGOGC)
	}
}

// userGOGC tells whether the user chose the GC target (GOGC).
func userGOGC() bool { return os.Getenv("GOGC") != "" }

// EnvIdleGOGC names the environment variable that sets the garbage
// collector's target (a GOGC percent) once the start is over; "off" keeps
// the one the process started with.
const EnvIdleGOGC = "CLUSTER_IDLE_GOGC"

// The garbage collector's target once the start is over, by what the
// process runs. A collection's work grows with the live heap and collections
// come as often as the allocations fill the target's room, so the collector's
// CPU goes with the bytes allocated over the target, whatever the heap's size.
const (
	// NodeIdleGOGC is for a process that runs a node (a server with its
	// node, an agent): the kubelet, cAdvisor and containerd allocate ~0.8 MB/s
	// when idle. A server with its node keeps ~88 MB live; at 25 it collected
	// every ~30 s, ~90 ms of CPU each (~0.19 CPU-s/min), at 50 every ~60 s
	// (~0.09), for 8–17 MB more PSS (gctrace and the footprint bench, stop 41).
	NodeIdleGOGC = 50
	// ControlPlaneIdleGOGC is for a control plane alone (server
	// --disable-agent): it allocates a fraction of that, and its PSS budget
	// (200 MB) has less room, so the heap grows by a quarter of the live
	// heap between collections.
	ControlPlaneIdleGOGC = 25
)

// Idle is what a process changes once its start is over.
type Idle struct {
	After     time.Duration // how long after the start; 0: change nothing
	GCPercent int           // the GC target from then on; < 0: leave it
	Governor  procs.Config  // what changes while the process is idle (internal/procs)
}

// IdleFromEnv reads EnvAfter, EnvIdleGOGC, procs.EnvIdle and
// procs.EnvTimerSlack; gogc is the GC target when EnvIdleGOGC is unset
// (NodeIdleGOGC or ControlPlaneIdleGOGC). A GOGC or GOMAXPROCS in the
// environment is the user's own choice for the whole life of the process:
// it wins.
func IdleFromEnv(gogc int) (Idle, error) {
	after, err := AfterFromEnv()
	if err != nil {
		return Idle{}, err
	}
	percent, err := idleGCPercentFromEnv(gogc)
	if err != nil {
		return Idle{}, err
	}
	governor, err := procs.ConfigFromEnv()
	if err != nil {
		return Idle{}, err
	}
	return Idle{After: after, GCPercent: percent, Governor: governor}, nil
}

func idleGCPercentFromEnv(gogc int) (int, error) {
	if userGOGC() {
		return -1, nil
	}
	v := os.Getenv(EnvIdleGOGC)
	switch v {
	case "":
		return gogc, nil
	case "off":
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a percent such as 25 (the heap grows by that share of the live heap between collections), or off to keep the start's target (%d %%)", EnvIdleGOGC, v, StartGOGC)
	}
	return n, nil
}

// Run waits i.After (unless ctx ends first), then sets the GC target, gives
// the heap the new target frees back to the OS, releases the start's pages
// of the binary, and governs the processors and timer slack until ctx ends. logf
// reports what changed.
func (i Idle) Run(ctx context.Context, logf func(format string, args ...any)) {
	if i.After <= 0 {
		return
	}
	t := time.NewTimer(i.After)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	if i.GCPercent > 0 {
		debug.SetGCPercent(i.GCPercent)
		debug.FreeOSMemory()
		logf("idle: the garbage collector now lets the heap grow by %d%% of the live heap between collections (%s)", i.GCPercent, EnvIdleGOGC)
	}
	before := residentBytes()
	if n, err := Release(); err != nil {
		logf("releasing the start's pages of the binary: %v", err)
	} else {
		logf("released the start's pages of the binary and dropped them from the page cache (%d MB mapped read-only, now read a page at a time; resident %d → %d MB)", n>>20, before>>20, residentBytes()>>20)
	}
	if i.Governor.Any() {
		if g := procs.New(i.Governor, logf); g != nil {
			g.Run(ctx, logf)
		}
	}
}
