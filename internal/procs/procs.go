// Package procs lets an idle process run its Go code on one processor.
//
// An idle server does little work, but in many small pieces: thousands of
// goroutines woken by timers and the network (watch bookmarks, workqueue
// metrics, the kubelet's relists, gRPC to containerd and kine). With more
// than one processor (Go's P), a wake-up often wakes a second OS thread to
// look for work, which finds none and sleeps again: futex calls, scheduler
// spinning. With one P the same work costs a quarter less CPU on the 2-core
// test machine. A busy process needs its cores back at once, so the
// Governor samples the process's CPU time every second: above half a core
// it restores the runtime's default number of processors; after ten seconds
// under a quarter of a core it goes back to one.
package procs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

// EnvIdle names the environment variable that turns the governor off
// ("off"). A GOMAXPROCS in the environment is the user's own choice and
// turns it off too.
const EnvIdle = "CLUSTER_IDLE_GOMAXPROCS"

// Enabled reads EnvIdle and GOMAXPROCS.
func Enabled() (bool, error) {
	if os.Getenv("GOMAXPROCS") != "" {
		return false, nil
	}
	switch v := os.Getenv(EnvIdle); v {
	case "", "on":
		return true, nil
	case "off":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: want off (keep all processors while idle) or on", EnvIdle, v)
	}
}

// Governor switches GOMAXPROCS between 1 and the runtime's default.
type Governor struct {
	Interval time.Duration // how often the process's CPU time is sampled
	Busy     float64       // cores used over one interval above which all processors come back
	Quiet    float64       // cores used below which an interval counts as quiet
	QuietFor time.Duration // how long the process must be quiet before it runs on one processor

	cpuTime func() time.Duration // the process's CPU time so far
	current func() int           // GOMAXPROCS now
	setOne  func()
	setAll  func() int // restores the default, returns it
}

// New is a Governor of this process with the defaults described above.
func New() *Governor {
	return &Governor{
		Interval: time.Second,
		Busy:     0.5,
		Quiet:    0.25,
		QuietFor: 10 * time.Second,
		cpuTime:  processCPU,
		current:  func() int { return runtime.GOMAXPROCS(0) },
		setOne:   func() { runtime.GOMAXPROCS(1) },
		setAll: func() int {
			runtime.SetDefaultGOMAXPROCS()
			return runtime.GOMAXPROCS(0)
		},
	}
}

// step is the governor's rule: whether the process runs on one processor
// after an interval in which it used `used` cores, having been quiet for
// `quiet` before it, and for how long it has been quiet now.
func (g *Governor) step(one bool, used float64, quiet time.Duration) (bool, time.Duration) {
	if one {
		return used <= g.Busy, 0
	}
	if used >= g.Quiet {
		return false, 0
	}
	quiet += g.Interval
	if quiet >= g.QuietFor {
		return true, 0
	}
	return false, quiet
}

// Run governs until ctx ends, then restores the default so that the stop
// runs on every processor. logf reports the first switch each way; later
// ones are not logged (an idle process may switch every few minutes).
func (g *Governor) Run(ctx context.Context, logf func(format string, args ...any)) {
	all := g.current()
	if all <= 1 {
		return
	}
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	one, quiet := false, time.Duration(0)
	loggedOne, loggedAll := false, false
	last := g.cpuTime()
	for {
		select {
		case <-ctx.Done():
			if one {
				g.setAll()
			}
			return
		case <-t.C:
		}
		now := g.cpuTime()
		used := float64(now-last) / float64(g.Interval)
		last = now
		next, q := g.step(one, used, quiet)
		quiet = q
		if next == one {
			continue
		}
		one = next
		if one {
			g.setOne()
			if !loggedOne {
				logf("idle: Go code now runs on 1 processor while the process uses under %.2g of a core; all %d come back when it uses more than %.2g (%s=off keeps them)", g.Quiet, all, g.Busy, EnvIdle)
				loggedOne = true
			}
			continue
		}
		all = g.setAll()
		if !loggedAll {
			logf("busy: Go code runs on %d processors again (%.2f of a core used in the last %s); later switches are not logged", all, used, g.Interval)
			loggedAll = true
		}
	}
}

// processCPU is the user and system CPU time of this process, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
