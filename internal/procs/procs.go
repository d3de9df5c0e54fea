// Package procs makes an idle process cheaper to keep awake: it runs its Go
// code on one processor and lets the kernel batch its timers.
//
// An idle server does little work, but in many small pieces: thousands of
// goroutines woken by timers and the network (watch bookmarks, the 500 ms
// metrics ticker of each of ~130 work queues, the kubelet's relists, gRPC
// to containerd and kine): ~520 thread wake-ups a second. With more than
// one processor (Go's P), a wake-up often wakes a second OS thread to look
// for work, which finds none and sleeps again; and each timer that fires
// alone is a wake-up of its own. So while the process is idle the Governor
// sets GOMAXPROCS=1 and a timer slack on every thread (timerslack.go): the
// kernel may then fire a sleeping thread's timer up to the slack late, and
// one wake-up serves every timer due by then.
//
// A busy process needs its cores and punctual timers back at once, so the
// Governor samples the process's CPU time every second: above half a core
// it restores both; after ten seconds under a quarter of a core it goes
// back to idle.
package procs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvIdle names the environment variable that keeps all processors while
// idle ("off"). A GOMAXPROCS in the environment is the user's own choice
// and keeps them too.
const EnvIdle = "CLUSTER_IDLE_GOMAXPROCS"

// Config is what the Governor changes while the process is idle.
type Config struct {
	OneProcessor bool          // GOMAXPROCS=1
	TimerSlack   time.Duration // every thread's timer slack; 0 leaves the slack alone
	slackGiven   bool          // TimerSlack is the user's, from EnvTimerSlack
}

// Any tells whether the Governor has anything to do.
func (c Config) Any() bool { return c.OneProcessor || c.TimerSlack > 0 }

// LimitTimerSlack returns c with the default timer slack lowered to at most
// max, for a process with a deadline the default would put at risk. A slack
// from EnvTimerSlack is the user's choice and stays.
func (c Config) LimitTimerSlack(max time.Duration) Config {
	if !c.slackGiven && c.TimerSlack > max {
		c.TimerSlack = max
	}
	return c
}

// EnvShimProcessors names the environment variable that sets how many
// processors each containerd shim runs its Go code on (default 1; "off"
// keeps upstream's GOMAXPROCS=4). containerd passes the process's
// environment on to its shims, which read it themselves (their main, in
// agent/bundle/bins); it is checked here so that a bad value stops the
// start instead of reaching them.
const EnvShimProcessors = "CLUSTER_SHIM_GOMAXPROCS"

// ConfigFromEnv reads EnvIdle, GOMAXPROCS and EnvTimerSlack, and checks
// EnvShimProcessors.
func ConfigFromEnv() (Config, error) {
	if err := checkShimProcessors(os.Getenv(EnvShimProcessors)); err != nil {
		return Config{}, err
	}
	one, err := oneProcessorFromEnv()
	if err != nil {
		return Config{}, err
	}
	slack, given, err := timerSlackFromEnv()
	if err != nil {
		return Config{}, err
	}
	return Config{OneProcessor: one, TimerSlack: slack, slackGiven: given}, nil
}

func checkShimProcessors(v string) error {
	if v == "" || v == "off" {
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n < 1 {
		return fmt.Errorf("%s=%q: want the number of processors each containerd shim may use (default 1), or off for upstream's 4", EnvShimProcessors, v)
	}
	return nil
}

func oneProcessorFromEnv() (bool, error) {
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

// Governor switches the process between busy (the runtime's processors,
// the threads' own timer slack) and idle (Config).
type Governor struct {
	Interval time.Duration // how often the process's CPU time is sampled
	Busy     float64       // cores used over one interval above which the process is busy again
	Quiet    float64       // cores used below which an interval counts as quiet
	QuietFor time.Duration // how long the process must be quiet before it is idle

	cpuTime func() time.Duration // the process's CPU time so far
	idle    func() string        // enters idle, says what changed (for the log)
	busy    func() string        // leaves it, says what came back
}

// New is a Governor of this process with the defaults described above, or
// nil if it would have nothing to do: c asks for nothing, or the machine
// has one processor and c asks for no timer slack.
func New(c Config, logf func(format string, args ...any)) *Governor {
	one := c.OneProcessor && runtime.GOMAXPROCS(0) > 1
	var slack *threadSlack
	if c.TimerSlack > 0 {
		s, err := newThreadSlack(c.TimerSlack)
		if err != nil {
			logf("idle: leaving the threads' timer slack alone: %v", err)
		} else {
			slack = s
		}
	}
	if !one && slack == nil {
		return nil
	}
	return newGovernor(one, slack, logf)
}

// newGovernor switches to one processor if one, and slack if not nil.
func newGovernor(one bool, slack *threadSlack, logf func(format string, args ...any)) *Governor {
	all := runtime.GOMAXPROCS(0)
	g := &Governor{Interval: time.Second, Busy: 0.5, Quiet: 0.25, QuietFor: 10 * time.Second, cpuTime: processCPU}
	g.idle = func() string {
		var did []string
		if one {
			runtime.GOMAXPROCS(1)
			did = append(did, "Go code runs on 1 processor")
		}
		if slack != nil {
			if err := slack.set(slack.idle); err != nil {
				// Said once: the next switch would fail the same way.
				logf("idle: leaving the threads' timer slack alone from now on: %v", err)
				_ = slack.set(slack.own)
				slack = nil
			} else {
				did = append(did, fmt.Sprintf("timers may fire up to %s late, so that one wake-up serves several (%s=0 keeps them punctual)", time.Duration(slack.idle), EnvTimerSlack))
			}
		}
		if one {
			did = append(did, fmt.Sprintf("all %d processors come back when it uses more than %.2g of a core (%s=off keeps them)", all, g.Busy, EnvIdle))
		}
		if len(did) == 0 {
			return "nothing changes (see the line above)"
		}
		return fmt.Sprintf("while the process uses under %.2g of a core: %s", g.Quiet, strings.Join(did, "; "))
	}
	g.busy = func() string {
		var did []string
		if one {
			runtime.SetDefaultGOMAXPROCS()
			did = append(did, fmt.Sprintf("Go code runs on %d processors again", runtime.GOMAXPROCS(0)))
		}
		if slack != nil {
			if err := slack.set(slack.own); err != nil {
				logf("busy: timer slack: %v", err) // tried again at the next switch
			} else {
				did = append(did, "timers are punctual again")
			}
		}
		if len(did) == 0 {
			return "nothing to restore"
		}
		return strings.Join(did, ", ")
	}
	return g
}

// step is the governor's rule: whether the process is idle after an
// interval in which it used `used` cores, having been quiet for `quiet`
// before it, and for how long it has been quiet now.
func (g *Governor) step(idle bool, used float64, quiet time.Duration) (bool, time.Duration) {
	if idle {
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

// Run governs until ctx ends, then leaves idle so that the stop runs on
// every processor with punctual timers. logf reports the first switch each
// way; later ones are not logged (an idle process may switch every few
// minutes).
func (g *Governor) Run(ctx context.Context, logf func(format string, args ...any)) {
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	idle, quiet := false, time.Duration(0)
	loggedIdle, loggedBusy := false, false
	last := g.cpuTime()
	for {
		select {
		case <-ctx.Done():
			if idle {
				g.busy()
			}
			return
		case <-t.C:
		}
		now := g.cpuTime()
		used := float64(now-last) / float64(g.Interval)
		last = now
		next, q := g.step(idle, used, quiet)
		quiet = q
		if next == idle {
			continue
		}
		idle = next
		if idle {
			did := g.idle()
			if !loggedIdle {
				logf("idle: %s", did)
				loggedIdle = true
			}
			continue
		}
		did := g.busy()
		if !loggedBusy {
			logf("busy: %s (%.2f of a core used in the last %s); later switches are not logged", did, used, g.Interval)
			loggedBusy = true
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
