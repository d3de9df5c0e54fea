// Command containerd-shim-runc-v2 is containerd's runc shim, upstream's
// (the same manager and task plugin as its cmd/containerd-shim-runc-v2),
// which first runs its Go code on one processor (procs.go) and sets every
// one of its threads' timer slack back to the kernel's default, and gives
// back what only its start used a minute later (release.go).
//
// An idle server or agent lets the kernel fire its timers late, so that
// one wake-up serves several (internal/procs, CLUSTER_IDLE_TIMER_SLACK); a
// process inherits the slack of the thread that started it, and the shim
// is started by containerd inside that process. Containers are the shim's
// children (through runc): they must get the kernel's punctual default, not
// an idle server's slack.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

// kernelTimerSlack is the Linux default (ns), what init and its children
// have unless told otherwise.
const kernelTimerSlack = 50000

func main() {
	if n := shimProcessors(); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	if err := resetTimerSlack(kernelTimerSlack); err != nil {
		// The containers would fire their timers late, not fail: say so and go on.
		fmt.Fprintln(os.Stderr, "containerd-shim-runc-v2: timer slack:", err)
	}
	if d := trimAfter(); d > 0 {
		// Fires only in the shim that serves a pod; the one containerd
		// runs to start it exits well before.
		time.AfterFunc(d, func() {
			if err := releaseStart(); err != nil {
				fmt.Fprintln(os.Stderr, "containerd-shim-runc-v2: releasing the start's pages:", err)
			}
		})
	}
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}

// resetTimerSlack sets the slack of each thread of this process to ns if
// it is larger. The Go runtime has made a few threads before main runs;
// those it makes later inherit the slack of the one making them, so a
// thread made during a pass by one not yet reset is found by listing again.
// internal/procs (threadSlack.set) does the same for the server and agent;
// this module cannot import it (a module of its own, see go.mod).
func resetTimerSlack(ns int64) error {
	if own, err := readSlack("self"); err != nil || own <= ns {
		return err
	}
	done := map[string]bool{}
	for pass := 0; pass < 5; pass++ {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		wrote := false
		for _, tid := range tids {
			if done[tid.Name()] {
				continue
			}
			done[tid.Name()], wrote = true, true
			f, err := os.OpenFile("/proc/"+tid.Name()+"/timerslack_ns", os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString(strconv.FormatInt(ns, 10))
				f.Close()
			}
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

// readSlack reads /proc/ID/timerslack_ns (ID a thread's id, or self).
func readSlack(id string) (int64, error) {
	b, err := os.ReadFile("/proc/" + id + "/timerslack_ns")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
