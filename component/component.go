// Package component is the one lifecycle door every running piece of cluster
// goes through: kine, the upstream daemons and our own controllers.
//
// A Manager starts components in order, waits until each is ready, and stops
// them in reverse order. If a running component fails, the manager reports it
// so the process can exit with a clear error (the service manager restarts us).
package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cluster-io/cluster/logging"
)

// Component is a long-running piece of the process.
type Component interface {
	// Name is the short name used in logs, e.g. "kube-apiserver".
	Name() string
	// Start launches the component in the background and returns.
	// The error channel of the Manager learns when it dies.
	Start(ctx context.Context) error
	// Ready blocks until the component serves, or ctx ends.
	Ready(ctx context.Context) error
	// Stop shuts the component down and waits for it. It is idempotent.
	Stop() error
}

// Failer is implemented by components that can die after Start; the channel
// yields at most one error and is closed when the component has ended.
type Failer interface {
	Done() <-chan error
}

// ProgressEvery is how often the manager says which component it still
// waits for.
var ProgressEvery = 5 * time.Second

// Optional is implemented by components whose failure after the start must
// not stop the process.
type Optional interface {
	IsOptional() bool
}

// Manager runs components in order.
type Manager struct {
	// ReadyTimeout bounds how long one component may take to become ready.
	ReadyTimeout time.Duration

	mu      sync.Mutex
	started []Component
	failed  chan error
	log     *logrus.Entry
}

// NewManager returns an empty manager.
func NewManager() *Manager {
	return &Manager{
		ReadyTimeout: 3 * time.Minute,
		failed:       make(chan error, 1),
		log:          logging.For("supervisor"),
	}
}

// Failed yields the first error of a component that died after it started.
func (m *Manager) Failed() <-chan error { return m.failed }

// Wait blocks until ctx ends (nil: a requested shutdown) or a started
// component dies (its error).
func (m *Manager) Wait(ctx context.Context) error { return Wait(ctx, m) }

// Wait blocks until ctx ends (nil: a requested shutdown) or a component
// started by any of managers dies (its error).
func Wait(ctx context.Context, managers ...*Manager) error {
	failed := make(chan error, len(managers))
	for _, m := range managers {
		go func() {
			select {
			case err := <-m.failed:
				failed <- err
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		managers[0].log.Info("shutdown requested")
		return nil
	case err := <-failed:
		return err
	}
}

// Start starts each component in turn and waits for it to be ready. On error
// the components already started are stopped again, in reverse order.
func (m *Manager) Start(ctx context.Context, components ...Component) error {
	for _, c := range components {
		if err := m.startOne(ctx, c); err != nil {
			m.Stop()
			return err
		}
	}
	return nil
}

func (m *Manager) startOne(ctx context.Context, c Component) error {
	begin := time.Now()
	m.log.Infof("starting %s", c.Name())
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", c.Name(), err)
	}
	m.mu.Lock()
	m.started = append(m.started, c)
	m.mu.Unlock()

	readyCtx, cancel := context.WithTimeout(ctx, m.ReadyTimeout)
	defer cancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- c.Ready(readyCtx) }()

	var died <-chan error
	if f, ok := c.(Failer); ok {
		died = f.Done()
	}
	// Say what we wait for, so that a slow start never looks hung.
	progress := time.NewTicker(ProgressEvery)
	defer progress.Stop()
	for ready := false; !ready; {
		select {
		case <-progress.C:
			m.log.Infof("still waiting for %s to be ready (%s)", c.Name(), time.Since(begin).Round(time.Second))
		case err := <-readyErr:
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					return fmt.Errorf("%s not ready after %s: %w", c.Name(), m.ReadyTimeout, err)
				}
				return fmt.Errorf("wait for %s: %w", c.Name(), err)
			}
			ready = true
		case err, ok := <-died:
			if !ok || err == nil {
				err = errors.New("exited before it was ready")
			}
			return fmt.Errorf("%s: %w", c.Name(), err)
		}
	}
	m.log.Infof("%s ready in %s", c.Name(), time.Since(begin).Round(time.Millisecond))
	if died != nil {
		go m.watch(ctx, c, died)
	}
	return nil
}

// watch forwards an unexpected exit of c to Failed.
func (m *Manager) watch(ctx context.Context, c Component, died <-chan error) {
	err, ok := <-died
	if ctx.Err() != nil || m.stopping(c) {
		return
	}
	if !ok || err == nil {
		err = errors.New("exited unexpectedly")
	}
	if o, ok := c.(Optional); ok && o.IsOptional() {
		m.log.Errorf("%s stopped: %v (the rest keeps running; a restart starts it again)", c.Name(), err)
		return
	}
	select {
	case m.failed <- fmt.Errorf("%s: %w", c.Name(), err):
	default:
	}
}

func (m *Manager) stopping(c Component) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.started {
		if s == c {
			return false
		}
	}
	return true
}

// Stop stops every started component in reverse start order and returns
// the errors they reported, joined.
func (m *Manager) Stop() error {
	var errs []error
	for {
		m.mu.Lock()
		n := len(m.started)
		if n == 0 {
			m.mu.Unlock()
			break
		}
		c := m.started[n-1]
		m.started = m.started[:n-1]
		m.mu.Unlock()

		begin := time.Now()
		if err := c.Stop(); err != nil {
			m.log.Warnf("stop %s: %v", c.Name(), err)
			errs = append(errs, fmt.Errorf("stop %s: %w", c.Name(), err))
			continue
		}
		m.log.Infof("stopped %s in %s", c.Name(), time.Since(begin).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}
