package procs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		gomaxprocs, idle, slack, shim string
		want                          Config
		wantErr                       string
	}{
		{want: Config{OneProcessor: true, TimerSlack: DefaultTimerSlack}},
		{idle: "on", slack: "5ms", want: Config{OneProcessor: true, TimerSlack: 5 * time.Millisecond, slackGiven: true}},
		{idle: "off", want: Config{TimerSlack: DefaultTimerSlack}},
		{slack: "0", want: Config{OneProcessor: true, slackGiven: true}},
		{idle: "off", slack: "off", want: Config{slackGiven: true}},
		{gomaxprocs: "2", want: Config{TimerSlack: DefaultTimerSlack}},
		{gomaxprocs: "2", idle: "bogus", want: Config{TimerSlack: DefaultTimerSlack}}, // the user's GOMAXPROCS wins
		{idle: "1", wantErr: `CLUSTER_IDLE_GOMAXPROCS="1": want off`},
		{slack: "20", wantErr: `CLUSTER_IDLE_TIMER_SLACK="20": want a duration up to 1s`},
		{slack: "-1ms", wantErr: `CLUSTER_IDLE_TIMER_SLACK="-1ms"`},
		{slack: "2s", wantErr: `CLUSTER_IDLE_TIMER_SLACK="2s"`},
		{shim: "2", want: Config{OneProcessor: true, TimerSlack: DefaultTimerSlack}},
		{shim: "off", want: Config{OneProcessor: true, TimerSlack: DefaultTimerSlack}},
		{shim: "0", wantErr: `CLUSTER_SHIM_GOMAXPROCS="0": want the number of processors`},
		{shim: "one", wantErr: `CLUSTER_SHIM_GOMAXPROCS="one"`},
	} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%s,%s=%s,%s=%s,%s=%s", tc.gomaxprocs, EnvIdle, tc.idle, EnvTimerSlack, tc.slack, EnvShimProcessors, tc.shim), func(t *testing.T) {
			t.Setenv(EnvShimProcessors, tc.shim)
			t.Setenv("GOMAXPROCS", tc.gomaxprocs)
			t.Setenv(EnvIdle, tc.idle)
			t.Setenv(EnvTimerSlack, tc.slack)
			got, err := ConfigFromEnv()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ConfigFromEnv() = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ConfigFromEnv() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// The default slack gives way to a process's shorter deadline; the user's
// slack does not.
func TestLimitTimerSlack(t *testing.T) {
	for _, tc := range []struct {
		slack string
		max   time.Duration
		want  time.Duration
	}{
		{slack: "", max: 20 * time.Millisecond, want: 20 * time.Millisecond},
		{slack: "", max: time.Second, want: DefaultTimerSlack},
		{slack: "300ms", max: 20 * time.Millisecond, want: 300 * time.Millisecond},
		{slack: "5ms", max: 20 * time.Millisecond, want: 5 * time.Millisecond},
		{slack: "0", max: 20 * time.Millisecond, want: 0},
	} {
		t.Run(fmt.Sprintf("%s=%s,max=%s", EnvTimerSlack, tc.slack, tc.max), func(t *testing.T) {
			t.Setenv(EnvTimerSlack, tc.slack)
			c, err := ConfigFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if got := c.LimitTimerSlack(tc.max).TimerSlack; got != tc.want {
				t.Errorf("timer slack %s; want %s", got, tc.want)
			}
		})
	}
}

func testGovernor() *Governor {
	return &Governor{Interval: time.Second, Busy: 0.5, Quiet: 0.25, QuietFor: 3 * time.Second}
}

func TestStep(t *testing.T) {
	g := testGovernor()
	for _, tc := range []struct {
		name      string
		one       bool
		used      float64
		quiet     time.Duration
		wantOne   bool
		wantQuiet time.Duration
	}{
		{"busy stays on all", false, 0.9, 0, false, 0},
		{"between the thresholds is not quiet", false, 0.3, 2 * time.Second, false, 0},
		{"a quiet interval counts", false, 0.1, time.Second, false, 2 * time.Second},
		{"quiet long enough: one", false, 0.1, 2 * time.Second, true, 0},
		{"one stays while not busy", true, 0.45, 0, true, 0},
		{"at the threshold stays one", true, 0.5, 0, true, 0},
		{"busy on one: all again", true, 0.6, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			one, quiet := g.step(tc.one, tc.used, tc.quiet)
			if one != tc.wantOne || quiet != tc.wantQuiet {
				t.Errorf("step(%v, %v, %v) = %v, %v; want %v, %v", tc.one, tc.used, tc.quiet, one, quiet, tc.wantOne, tc.wantQuiet)
			}
		})
	}
}

// TestRun drives the loop with a made-up CPU clock: each sample adds the
// next load (cores over one interval). It checks the switches, that each
// direction is logged once, and that the end restores all processors.
func TestRun(t *testing.T) {
	g := testGovernor()
	g.Interval = time.Millisecond
	g.QuietFor = 3 * time.Millisecond
	loads := []float64{0, // the first sample, before the loop
		0.1, 0.1, 0.1, // quiet for 3 intervals: one
		0.4, 0.9, // busy: all
		0.1, 0.1, 0.1, // one again
		0.8,           // all again
		0.1, 0.1, 0.1, // one, and then the end
	}
	var events []string
	ctx, cancel := context.WithCancel(context.Background())
	var cpu time.Duration
	g.cpuTime = func() time.Duration {
		if len(loads) == 0 {
			cancel()
			return cpu
		}
		cpu += time.Duration(loads[0] * float64(g.Interval))
		loads = loads[1:]
		return cpu
	}
	g.idle = func() string { events = append(events, "idle"); return "less" }
	g.busy = func() string { events = append(events, "busy"); return "more" }
	var logs []string
	g.Run(ctx, func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) })

	if got, want := strings.Join(events, " "), "idle busy idle busy idle busy"; got != want {
		t.Errorf("switches %q; want %q (the last: busy again at the end)", got, want)
	}
	if len(loads) != 0 {
		t.Errorf("%d samples left: the loop ended early", len(loads))
	}
	if len(logs) != 2 || logs[0] != "idle: less" || !strings.HasPrefix(logs[1], "busy: more (0.90 of a core") {
		t.Errorf("logs %q; want the first switch each way", logs)
	}
}

func TestProcessCPU(t *testing.T) {
	before := processCPU()
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if after := processCPU(); after-before < 10*time.Millisecond {
		t.Errorf("CPU time %v → %v after 50 ms of spinning; want it to grow", before, after)
	}
}

// On a one-processor machine a Governor asked only for one processor has
// nothing to do.
func TestNewNothingToDo(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, c := range []Config{{}, {OneProcessor: true}} {
		if g := New(c, t.Logf); g != nil {
			t.Errorf("New(%+v) on one processor = a Governor; want nil", c)
		}
	}
}

// threadSlacks reads the timer slack of each thread of this process.
func threadSlacks(t *testing.T) map[string]int64 {
	t.Helper()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/" + tid.Name() + "/timerslack_ns")
		if err != nil {
			continue // ended meanwhile
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[tid.Name()] = n
	}
	return out
}

// newThreadSlackOf reads the timer slack of a thread started after now.
func newThreadSlackOf(t *testing.T) int64 {
	t.Helper()
	got := make(chan int64)
	go func() {
		// A locked goroutine that exits takes its thread with it, so the
		// next one locked runs on a thread the runtime makes anew.
		runtime.LockOSThread()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", syscall.Gettid()))
		if err != nil {
			t.Error(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		got <- n
	}()
	return <-got
}

// The slack is set on every thread, new threads inherit it, and the
// threads' own comes back. Writing other threads' slack needs CAP_SYS_NICE
// (the server runs as root, and so does CI).
func TestThreadSlack(t *testing.T) {
	s, err := newThreadSlack(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	own := s.own
	for i := 0; i < 4; i++ { // more threads: goroutines blocked in syscalls
		go func() { runtime.LockOSThread(); time.Sleep(time.Second) }()
	}
	time.Sleep(10 * time.Millisecond)
	if err := s.set(s.idle); err != nil {
		t.Fatalf("set the idle slack: %v", err)
	}
	defer s.set(own)
	for tid, ns := range threadSlacks(t) {
		if ns != s.idle {
			t.Errorf("thread %s: slack %d ns; want %d", tid, ns, s.idle)
		}
	}
	if got := len(threadSlacks(t)); got < 5 {
		t.Errorf("%d threads; the test wants several", got)
	}
	if ns := newThreadSlackOf(t); ns != s.idle {
		t.Errorf("a new thread's slack: %d ns; want %d, its maker's", ns, s.idle)
	}
	if err := s.set(own); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for tid, ns := range threadSlacks(t) {
		if ns != own {
			t.Errorf("thread %s after restoring: slack %d ns; want %d", tid, ns, own)
		}
	}
	if _, err := newThreadSlack(time.Duration(own)); err == nil {
		t.Errorf("newThreadSlack(%d ns), the slack the threads have: no error; want one (nothing to do)", own)
	}
}

// A slack the process may not set is reported once, and not tried again.
func TestSlackRefused(t *testing.T) {
	proc := t.TempDir()
	for _, dir := range []string{"self/task/7", "7/timerslack_ns"} { // a directory: writing it fails
		if err := os.MkdirAll(filepath.Join(proc, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	g := newGovernor(false, &threadSlack{own: 50000, idle: 1000000, proc: proc}, logf)
	for i := 0; i < 3; i++ {
		g.idle()
		g.busy()
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "leaving the threads' timer slack alone from now on") {
		t.Errorf("logs %q; want one line saying the slack is left alone", logs)
	}
}
