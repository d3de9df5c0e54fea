package embedded

import (
	"context"
	"fmt"

	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/klog/v2"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// RunScheduler runs kube-scheduler with argv-style flags until ctx ends.
// Leader election must be off (--leader-elect=false): upstream exits the
// process when it stops leading.
func RunScheduler(ctx context.Context, args []string) error {
	ctx = klog.NewContext(ctx, klog.Background().WithName("kube-scheduler"))
	opts := options.NewOptions()
	if _, err := parseFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := applyLogging("kube-scheduler", opts.Logs, fg); err != nil {
		return err
	}
	cc, sched, err := scheduler.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	if cc.LeaderElection != nil {
		return fmt.Errorf("kube-scheduler: leader election must be disabled when embedded")
	}
	if err := scheduler.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	return nil
}
