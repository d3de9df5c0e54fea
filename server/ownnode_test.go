package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// lateAPIServer listens at once but answers only after open is closed,
// as an apiserver that is still building its handlers.
func lateAPIServer(t *testing.T, open <-chan struct{}) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-open:
			w.WriteHeader(http.StatusInternalServerError) // answers, not ready
		default:
			// Like a refused connection: the client sees no answer.
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStartNodeEarlyOrder(t *testing.T) {
	open := make(chan struct{})
	srv := lateAPIServer(t, open)
	var rbacCalls, rbacFailures atomic.Int32
	applied := make(chan struct{})
	applyRBAC := func(context.Context) error {
		select {
		case <-open:
		default:
			t.Error("node RBAC applied before the apiserver answered")
		}
		// The first attempts fail, as before kube-system exists.
		if rbacCalls.Add(1) < 3 {
			rbacFailures.Add(1)
			return errors.New(`namespaces "kube-system" not found`)
		}
		close(applied)
		return nil
	}
	started := make(chan struct{})
	start := func(context.Context) (string, error) {
		select {
		case <-applied:
		default:
			t.Error("node started before its RBAC was applied")
		}
		close(started)
		return "node-1", nil
	}
	n := startNodeEarly(context.Background(), srv.Client(), srv.URL, applyRBAC, start)
	defer n.stop()

	select {
	case <-started:
		t.Fatal("node started while the apiserver did not answer")
	case <-time.After(300 * time.Millisecond):
	}
	close(open)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.rbacApplied(ctx); err != nil {
		t.Fatalf("rbacApplied: %v", err)
	}
	if got := rbacFailures.Load(); got != 2 {
		t.Errorf("node RBAC failed %d times before it applied; want it retried past both failures", got)
	}
	name, err := n.wait()
	if err != nil || name != "node-1" {
		t.Fatalf("wait = %q, %v; want node-1, nil", name, err)
	}
}

func TestStartNodeEarlyWithoutNode(t *testing.T) {
	srv := lateAPIServer(t, closed())
	n := startNodeEarly(context.Background(), srv.Client(), srv.URL, func(context.Context) error { return nil }, nil)
	if err := n.rbacApplied(context.Background()); err != nil {
		t.Fatalf("rbacApplied: %v", err)
	}
	if name, err := n.wait(); err != nil || name != "" {
		t.Fatalf("wait = %q, %v; want no node and no error", name, err)
	}
}

func TestStartNodeEarlyStop(t *testing.T) {
	srv := lateAPIServer(t, make(chan struct{})) // never answers
	var started atomic.Bool
	n := startNodeEarly(context.Background(), srv.Client(), srv.URL, func(context.Context) error { return nil },
		func(context.Context) (string, error) { started.Store(true); return "x", nil })
	done := make(chan struct{})
	go func() { n.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end a start waiting for the apiserver")
	}
	if started.Load() {
		t.Error("the node started although the apiserver never answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.rbacApplied(ctx); err == nil {
		t.Error("rbacApplied after stop: want the cancellation's error")
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
