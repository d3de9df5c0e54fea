package procs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		gomaxprocs, idle string
		want             bool
		wantErr          string
	}{
		{want: true},
		{idle: "on", want: true},
		{idle: "off", want: false},
		{gomaxprocs: "2", want: false},
		{gomaxprocs: "2", idle: "bogus", want: false}, // the user's GOMAXPROCS wins
		{idle: "1", wantErr: `CLUSTER_IDLE_GOMAXPROCS="1": want off`},
	} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%s,%s=%s", tc.gomaxprocs, EnvIdle, tc.idle), func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.gomaxprocs)
			t.Setenv(EnvIdle, tc.idle)
			got, err := Enabled()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Enabled() = %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Enabled() = %v, %v; want %v", got, err, tc.want)
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
	g.current = func() int { return 2 }
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
	g.setOne = func() { events = append(events, "one") }
	g.setAll = func() int { events = append(events, "all"); return 2 }
	var logs []string
	g.Run(ctx, func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) })

	if got, want := strings.Join(events, " "), "one all one all one all"; got != want {
		t.Errorf("switches %q; want %q (the last: restored at the end)", got, want)
	}
	if len(loads) != 0 {
		t.Errorf("%d samples left: the loop ended early", len(loads))
	}
	if len(logs) != 2 || !strings.HasPrefix(logs[0], "idle: Go code now runs on 1 processor") || !strings.HasPrefix(logs[1], "busy: Go code runs on 2 processors again") {
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

func TestRunOnOneProcessor(t *testing.T) {
	g := testGovernor()
	g.current = func() int { return 1 }
	g.cpuTime = func() time.Duration { t.Fatal("sampled the CPU on a one-processor machine"); return 0 }
	g.Run(context.Background(), t.Logf) // returns at once
}
