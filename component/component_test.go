package component

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func runner(rec *recorder, name string, runErr error, ready func(context.Context) error) *Runner {
	return &Runner{
		ComponentName: name,
		Run: func(ctx context.Context) error {
			rec.add("run " + name)
			if runErr != nil {
				return runErr
			}
			<-ctx.Done()
			rec.add("stop " + name)
			return nil
		},
		ReadyFunc: ready,
	}
}

func TestStartInOrderStopInReverse(t *testing.T) {
	rec := &recorder{}
	m := NewManager()
	readyAfter := func(d time.Duration) func(context.Context) error {
		return func(context.Context) error { time.Sleep(d); return nil }
	}
	if err := m.Start(context.Background(),
		runner(rec, "a", nil, readyAfter(20*time.Millisecond)),
		runner(rec, "b", nil, nil),
		runner(rec, "c", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"run a", "run b", "run c", "stop c", "stop b", "stop a"}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if err := m.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestDiesBeforeReady(t *testing.T) {
	rec := &recorder{}
	m := NewManager()
	never := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	err := m.Start(context.Background(),
		runner(rec, "a", nil, nil),
		runner(rec, "b", errors.New("port taken"), never),
		runner(rec, "c", nil, nil))
	if err == nil || !strings.Contains(err.Error(), "b: port taken") {
		t.Fatalf("Start = %v", err)
	}
	if got := rec.get(); slices.Contains(got, "run c") || !slices.Contains(got, "stop a") {
		t.Errorf("after a failed start: %v (c must not run, a must be stopped)", got)
	}
}

func TestReadyTimeout(t *testing.T) {
	m := NewManager()
	m.ReadyTimeout = 50 * time.Millisecond
	never := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	err := m.Start(context.Background(), runner(&recorder{}, "slow", nil, never))
	if err == nil || !strings.Contains(err.Error(), "slow not ready after 50ms") {
		t.Fatalf("Start = %v", err)
	}
}

func TestFailureAfterReadyIsReported(t *testing.T) {
	m := NewManager()
	die := make(chan struct{})
	c := &Runner{ComponentName: "flaky", Run: func(ctx context.Context) error {
		select {
		case <-die:
			return errors.New("crashed")
		case <-ctx.Done():
			return nil
		}
	}}
	if err := m.Start(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	close(die)
	select {
	case err := <-m.Failed():
		if !strings.Contains(err.Error(), "flaky: crashed") {
			t.Errorf("Failed() = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("failure not reported")
	}
	m.Stop()
}

func TestStopIsNotAFailure(t *testing.T) {
	m := NewManager()
	if err := m.Start(context.Background(), runner(&recorder{}, "a", nil, nil)); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	select {
	case err := <-m.Failed():
		t.Fatalf("a requested stop was reported as failure: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestStopTimeout(t *testing.T) {
	r := &Runner{ComponentName: "stuck", StopTimeout: 50 * time.Millisecond,
		Run: func(context.Context) error { select {} }}
	r.Start(context.Background())
	if err := r.Stop(); err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Errorf("Stop = %v", err)
	}
}

func TestSlowStartSaysWhatItWaitsFor(t *testing.T) {
	hook := logtest.NewGlobal()
	defer hook.Reset()
	old := ProgressEvery
	ProgressEvery = 20 * time.Millisecond
	defer func() { ProgressEvery = old }()
	m := NewManager()
	slow := runner(&recorder{}, "slowpoke", nil, func(ctx context.Context) error {
		time.Sleep(100 * time.Millisecond)
		return nil
	})
	if err := m.Start(context.Background(), slow); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	found := false
	for _, e := range hook.AllEntries() {
		found = found || strings.Contains(e.Message, "still waiting for slowpoke to be ready")
	}
	if !found {
		t.Error("no progress line while a component was slow to be ready")
	}
}

func TestOptionalFailureKeepsTheRestRunning(t *testing.T) {
	m := NewManager()
	failing := &Runner{ComponentName: "addon", Optional: true, Run: func(ctx context.Context) error {
		time.Sleep(20 * time.Millisecond)
		return errors.New("boom")
	}}
	if err := m.Start(context.Background(), failing); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	select {
	case err := <-m.Failed():
		t.Fatalf("an optional component's failure was reported as fatal: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
}
