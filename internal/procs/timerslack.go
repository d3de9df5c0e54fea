package procs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvTimerSlack names the environment variable that sets the timer slack
// of an idle process's threads; "0" leaves the kernel's (50 µs).
const EnvTimerSlack = "CLUSTER_IDLE_TIMER_SLACK"

// DefaultTimerSlack lets the kernel fire an idle process's timers up to
// 100 ms late. An idle server's own periods are 100 ms and longer (the
// kubelet's volume reconciler), most of them seconds (watch bookmarks,
// work-queue metrics, relists): with one wake-up serving every timer due
// within 100 ms it wakes far less often. One idle server with 3 pods, the
// slack of its threads switched every 60 s, 4 pairs: 20 ms 2.03, 100 ms
// 1.76 CPU-s a minute (lower in every pair); 300 ms went lower again
// (1.52, 3 pairs of 4), but timeouts of a second would then be a third off.
// A server with an etcd member lowers it (LimitTimerSlack).
const DefaultTimerSlack = 100 * time.Millisecond

// maxTimerSlack bounds what EnvTimerSlack may ask: beyond it timeouts and
// periods themselves would be off.
const maxTimerSlack = time.Second

// timerSlackFromEnv returns the slack EnvTimerSlack asks for, and whether
// it asks (the user's choice, which LimitTimerSlack keeps).
func timerSlackFromEnv() (time.Duration, bool, error) {
	v := os.Getenv(EnvTimerSlack)
	switch v {
	case "":
		return DefaultTimerSlack, false, nil
	case "0", "off":
		return 0, true, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxTimerSlack {
		return 0, false, fmt.Errorf("%s=%q: want a duration up to %s such as 100ms (how late an idle process's timers may fire), or 0 to keep them punctual", EnvTimerSlack, v, maxTimerSlack)
	}
	return d, true, nil
}

// threadSlack sets the timer slack of every thread of this process. A new
// thread starts with the slack of the thread that made it, so the Go
// runtime's later threads follow; child processes inherit it too, which is
// why the bundled containerd shim sets its own back to the kernel's before
// it starts containers.
type threadSlack struct {
	own  int64  // ns, what the threads had
	idle int64  // ns, while idle
	proc string // where procfs is mounted
}

func newThreadSlack(idle time.Duration) (*threadSlack, error) {
	b, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		return nil, err
	}
	own, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("/proc/self/timerslack_ns: %w", err)
	}
	if own >= idle.Nanoseconds() {
		return nil, fmt.Errorf("it is %s already", time.Duration(own))
	}
	return &threadSlack{own: own, idle: idle.Nanoseconds(), proc: "/proc"}, nil
}

// set writes ns to /proc/TID/timerslack_ns of each thread (a thread's own
// entry, which /proc/self/task/TID lacks); writing another thread's needs
// CAP_SYS_NICE, which the server and agent, running as root, have.
func (s *threadSlack) set(ns int64) error {
	value := []byte(strconv.FormatInt(ns, 10))
	done := map[string]bool{}
	// A thread made during a pass by one not yet written inherits the old
	// slack: list again until a pass finds no thread it has not written.
	for pass := 0; pass < 5; pass++ {
		tids, err := os.ReadDir(s.proc + "/self/task")
		if err != nil {
			return err
		}
		wrote := false
		for _, tid := range tids {
			if done[tid.Name()] {
				continue
			}
			done[tid.Name()], wrote = true, true
			err := writeExisting(s.proc+"/"+tid.Name()+"/timerslack_ns", value)
			if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ESRCH) {
				return err // a thread that ended meanwhile is no error
			}
		}
		if !wrote {
			return nil
		}
	}
	return nil
}

func writeExisting(path string, value []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
