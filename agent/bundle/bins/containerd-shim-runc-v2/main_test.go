package main

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// setAllSlack gives every thread of the test process the slack an idle
// server would have passed on.
func setAllSlack(t *testing.T, ns int64) {
	t.Helper()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if err := os.WriteFile("/proc/"+tid.Name()+"/timerslack_ns", []byte(strconv.FormatInt(ns, 10)), 0); err != nil {
			t.Fatalf("thread %s: %v (writing another thread's slack needs CAP_SYS_NICE)", tid.Name(), err)
		}
	}
}

func TestResetTimerSlack(t *testing.T) {
	for i := 0; i < 4; i++ { // more threads
		go func() { runtime.LockOSThread(); time.Sleep(time.Second) }()
	}
	time.Sleep(10 * time.Millisecond)
	const idle = 20_000_000
	setAllSlack(t, idle)
	defer setAllSlack(t, kernelTimerSlack)
	if err := resetTimerSlack(kernelTimerSlack); err != nil {
		t.Fatal(err)
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 5 {
		t.Errorf("%d threads; the test wants several", len(tids))
	}
	for _, tid := range tids {
		ns, err := readSlack(tid.Name())
		if err != nil {
			continue // ended meanwhile
		}
		if ns != kernelTimerSlack {
			t.Errorf("thread %s: slack %d ns after the reset; want %d", tid.Name(), ns, kernelTimerSlack)
		}
	}
	// A smaller slack than the kernel's (a user's choice) stays.
	setAllSlack(t, 1000)
	if err := resetTimerSlack(kernelTimerSlack); err != nil {
		t.Fatal(err)
	}
	if ns, _ := readSlack("self"); ns != 1000 {
		t.Errorf("a 1000 ns slack became %d; want it kept", ns)
	}
}
