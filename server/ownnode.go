package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/charts"
	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/server/deploy"
)

// earlyNode is the server's own node starting alongside the control plane.
// Its RBAC goes in and it joins as soon as the apiserver answers, while the
// apiserver's post-start hooks still run (a second of them is a fixed
// wait before the bootstrap roles are written): flannel's subnet manager,
// which checks its informer's sync only once a second, has synced by the
// time the kubelet registers the node, instead of adding up to that second
// to a fresh start (a restart's node is Ready without waiting for flannel:
// its CNI config is already there). The kubelet itself still waits for
// the controller-manager (agent.Setup.BeforeKubelet).
type earlyNode struct {
	cancel context.CancelFunc
	rbac   chan error // the node RBAC's outcome, sent once
	done   chan struct{}
	name   string
	err    error
}

// nodeRBACTimeout bounds the node RBAC's retries once the apiserver
// answers: its namespace and caches are there within a second or two.
const nodeRBACTimeout = time.Minute

// startNodeEarly runs applyRBAC (the node RBAC, nodeRBAC) once the
// apiserver at apiURL answers at all, retrying it until it succeeds, then
// start (nil: no node), in the background.
func startNodeEarly(ctx context.Context, client *http.Client, apiURL string, applyRBAC func(context.Context) error, start func(context.Context) (string, error)) *earlyNode {
	ctx, cancel := context.WithCancel(ctx)
	n := &earlyNode{cancel: cancel, rbac: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(n.done)
		err := afterAPIAnswers(ctx, client, apiURL, applyRBAC)
		n.rbac <- err
		if err != nil {
			n.err = err
			return
		}
		if start != nil {
			n.name, n.err = start(ctx)
		}
	}()
	return n
}

// afterAPIAnswers waits until the apiserver answers, then calls apply
// until it succeeds (for nodeRBACTimeout at most).
func afterAPIAnswers(ctx context.Context, client *http.Client, apiURL string, apply func(context.Context) error) error {
	if err := component.HTTPAnswers(client, apiURL+"/readyz")(ctx); err != nil {
		return err
	}
	// Before the apiserver is ready, kube-system (where the deployer keeps
	// its state) may not exist yet.
	rctx, cancel := context.WithTimeout(ctx, nodeRBACTimeout)
	defer cancel()
	return component.Poll(rctx, 100*time.Millisecond, apply)
}

// nodeRBAC applies the files a node needs to join and run flannel
// (charts.NodeRBAC), which agents need as well.
func nodeRBAC(deployer *deploy.Controller) func(context.Context) error {
	return func(ctx context.Context) error { return deployer.SyncOnly(ctx, charts.NodeRBAC...) }
}

// rbacApplied waits for the node RBAC, which agents need to join too.
func (n *earlyNode) rbacApplied(ctx context.Context) error {
	select {
	case err := <-n.rbac:
		if err != nil {
			return fmt.Errorf("node RBAC: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns the node's name once it started, or why it did not.
func (n *earlyNode) wait() (string, error) {
	<-n.done
	return n.name, n.err
}

// stop cancels a start still under way and waits for it to end (the
// node's components, once started, are stopped by their manager).
func (n *earlyNode) stop() {
	n.cancel()
	<-n.done
}

// startOwnNode starts the server's own node on mgr, with the runtime prep
// prepared. It joins through the same API as any agent, over loopback,
// pinning the CA with the server token's hash.
func startOwnNode(ctx context.Context, mgr *component.Manager, prep *preparation, s agent.Setup) (string, error) {
	// The server may give up before its node's runtime is prepared.
	select {
	case <-prep.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	prepared, err := prep.wait()
	if err != nil {
		return "", err
	}
	s.Prepared = prepared
	return agent.StartNode(ctx, mgr, s)
}
