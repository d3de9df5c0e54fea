package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/cluster-io/cluster/component"
)

// elected runs a daemon only while this server holds a Lease in
// kube-system, for servers that share a datastore: one scheduler, one
// controller-manager and one set of our controllers act at a time.
// Upstream's own leader election is not used because the scheduler calls
// os.Exit when it ends, even on a requested stop. Losing the lease ends Run
// with an error, which stops the server (as upstream's daemons exit): an
// upstream daemon cannot be started twice in one process.
type elected struct {
	lease      string
	identity   string
	kubeconfig string
	run        func(ctx context.Context) error
	ready      func(ctx context.Context) error // the daemon's own readiness, while leading

	mu      sync.Mutex
	leading bool
	leader  string
}

func (e *elected) state() (leading bool, leader string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading, e.leader
}

// Standby reports whether another server leads.
func (e *elected) Standby() bool {
	leading, leader := e.state()
	return !leading && leader != "" && leader != e.identity
}

func (e *elected) Run(parent context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		return fmt.Errorf("%s leader election: %w", e.lease, err)
	}
	// Bounded requests: releasing the lease on stop must not hang on an
	// apiserver whose datastore lost its quorum.
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("%s leader election: %w", e.lease, err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "kube-system", e.lease, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: e.identity})
	if err != nil {
		return fmt.Errorf("%s leader election: %w", e.lease, err)
	}
	// client-go starts OnStartedLeading in a goroutine it does not wait
	// for; the daemon runs here instead, so that Run returns only after it
	// has stopped (the apiserver stops after us: a controller-manager
	// still starting controllers against a stopped apiserver exits the
	// process).
	leading := make(chan context.Context, 1)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: e.lease, ReleaseOnCancel: true,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				e.mu.Lock()
				e.leading = true
				e.mu.Unlock()
				leading <- ctx
			},
			OnStoppedLeading: func() {
				e.mu.Lock()
				e.leading = false
				e.mu.Unlock()
			},
			OnNewLeader: func(id string) {
				e.mu.Lock()
				e.leader = id
				e.mu.Unlock()
				if id != e.identity {
					log.Infof("%s: %s leads; this server stands by", e.lease, id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("%s leader election: %w", e.lease, err)
	}
	electionDone := make(chan struct{})
	go func() {
		defer close(electionDone)
		le.Run(ctx)
	}()
	select {
	case <-electionDone:
		return nil // stopped before leading
	case leadCtx := <-leading:
		log.Infof("%s: this server leads; starting", e.lease)
		runErr := e.run(leadCtx)
		cancel()
		<-electionDone
		switch {
		case parent.Err() != nil:
			return nil
		case runErr != nil:
			return runErr
		}
		return errors.New(e.lease + ": lost the lease; stopping so that another server's takes over alone")
	}
}

// Ready: leading and the daemon ready, or another server leads.
func (e *elected) Ready(ctx context.Context) error {
	return component.Poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		leading, leader := e.state()
		switch {
		case leading && e.ready != nil:
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return e.ready(cctx)
		case leading:
			return nil
		case leader != "" && leader != e.identity:
			return nil
		}
		return errors.New("no leader yet")
	})
}
