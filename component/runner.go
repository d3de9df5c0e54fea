package component

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Runner adapts a blocking run function (the shape of upstream daemons'
// Run(ctx, ...) entry points) to the Component interface.
type Runner struct {
	// ComponentName is returned by Name.
	ComponentName string
	// Run blocks until ctx is cancelled or the daemon fails.
	Run func(ctx context.Context) error
	// ReadyFunc reports readiness; nil means ready as soon as Run started.
	ReadyFunc func(ctx context.Context) error
	// StopTimeout bounds how long Stop waits for Run to return.
	StopTimeout time.Duration
	// Optional: when Run fails after the start, the manager logs it and the
	// process runs on (for add-ons the cluster works without).
	Optional bool

	once   sync.Once
	cancel context.CancelFunc
	done   chan error
	result error
	ended  chan struct{}
}

var _ Component = (*Runner)(nil)
var _ Failer = (*Runner)(nil)

// Name implements Component.
func (r *Runner) Name() string { return r.ComponentName }

// Start implements Component. The run function gets a context that is
// cancelled by Stop, not by the caller's context, so that the manager
// decides the stop order.
func (r *Runner) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	r.ended = make(chan struct{})
	go func() {
		err := r.Run(ctx)
		r.result = err
		r.done <- err
		close(r.done)
		close(r.ended)
	}()
	return nil
}

// IsOptional implements Optional.
func (r *Runner) IsOptional() bool { return r.Optional }

// Done implements Failer.
func (r *Runner) Done() <-chan error { return r.done }

// Ready implements Component.
func (r *Runner) Ready(ctx context.Context) error {
	if r.ReadyFunc == nil {
		return nil
	}
	return r.ReadyFunc(ctx)
}

// Stop implements Component.
func (r *Runner) Stop() error {
	if r.cancel == nil {
		return nil
	}
	var err error
	r.once.Do(func() {
		r.cancel()
		timeout := r.StopTimeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		select {
		case <-r.ended:
			if r.result != nil && r.result != context.Canceled {
				err = r.result
			}
		case <-time.After(timeout):
			err = fmt.Errorf("did not stop within %s", timeout)
		}
	})
	return err
}

// Poll calls check every interval until it returns nil or ctx ends; the last
// check error is wrapped into the context error to say what was awaited.
func Poll(ctx context.Context, interval time.Duration, check func(ctx context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
