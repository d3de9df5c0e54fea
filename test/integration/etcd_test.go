package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster-io/cluster/test/harness"
)

// An idle server lets the kernel fire its timers up to 100 ms late
// (internal/procs), but one that runs an etcd member only 20 ms: etcd's
// raft heartbeats are 100 ms apart.
func TestEtcdServerKeepsItsTimersPunctual(t *testing.T) {
	s := newServer(t)
	s.env = []string{"CLUSTER_TRIM_AFTER=1s"}
	s.start("--cluster-init")
	harness.WaitFor(t, 2*time.Minute, "the server's switch to idle", func() error {
		if log := s.log.String(); !strings.Contains(log, "timers may fire up to") {
			return fmt.Errorf("no line saying the server's timers may fire late")
		}
		return nil
	})
	log := s.log.String()
	if !strings.Contains(log, "timers may fire up to 20ms late") {
		t.Errorf("want a 20 ms timer slack; the server says:\n%s", linesWith(log, "timers may fire"))
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The server may have turned busy again meanwhile: then its threads
	// have the kernel's 50 µs, never more than 20 ms.
	if ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil || ns > 20_000_000 {
		t.Errorf("main thread's timer slack %q ns; want at most 20 ms", strings.TrimSpace(string(b)))
	}
	s.stop(syscall.SIGTERM)
}

// linesWith returns the lines of log that contain s.
func linesWith(log, s string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
