package memtrim

import (
	"context"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestIdleFromEnv(t *testing.T) {
	// Neither NodeIdleGOGC nor ControlPlaneIdleGOGC: the caller's default is
	// the one taken.
	const defaultGOGC = 37
	tests := []struct {
		gogc, idle string // "-" leaves the variable unset
		want       int
		wantErr    bool
	}{
		{gogc: "-", idle: "-", want: defaultGOGC},
		{gogc: "-", idle: "", want: defaultGOGC},
		{gogc: "-", idle: "50", want: 50},
		{gogc: "-", idle: "off", want: -1},
		{gogc: "200", idle: "-", want: -1}, // the user's GOGC wins
		{gogc: "200", idle: "10", want: -1},
		{gogc: "-", idle: "0", wantErr: true},
		{gogc: "-", idle: "-5", wantErr: true},
		{gogc: "-", idle: "25%", wantErr: true},
		{gogc: "-", idle: "low", wantErr: true},
	}
	set := func(name, v string) {
		t.Setenv(name, "")
		if v == "-" {
			os.Unsetenv(name)
		} else {
			os.Setenv(name, v)
		}
	}
	for _, tt := range tests {
		set("GOGC", tt.gogc)
		set(EnvIdleGOGC, tt.idle)
		set(EnvAfter, "-")
		got, err := IdleFromEnv(defaultGOGC)
		if (err != nil) != tt.wantErr {
			t.Errorf("GOGC=%s %s=%s: error %v, want error %v", tt.gogc, EnvIdleGOGC, tt.idle, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), EnvIdleGOGC) {
				t.Errorf("error %q does not name %s", err, EnvIdleGOGC)
			}
			continue
		}
		if got.GCPercent != tt.want || got.After != DefaultAfter {
			t.Errorf("GOGC=%s %s=%s: %+v, want GCPercent %d after %v", tt.gogc, EnvIdleGOGC, tt.idle, got, tt.want, DefaultAfter)
		}
	}
}

// Run sets the GC target when its time comes, and not before.
func TestIdleRunSetsGCTarget(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	var logged []string
	logf := func(format string, args ...any) { logged = append(logged, format) }

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Idle{After: time.Hour, GCPercent: 37}.Run(ctx, logf)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("a cancelled Run set the GC target to %d", got)
	}

	Idle{After: time.Millisecond, GCPercent: 37}.Run(context.Background(), logf)
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("GC target after Run: %d, want 37", got)
	}
	Idle{After: time.Millisecond, GCPercent: -1}.Run(context.Background(), logf)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GCPercent -1 changed the GC target to %d", got)
	}
	if len(logged) == 0 {
		t.Error("Run logged nothing")
	}
}
