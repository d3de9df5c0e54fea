package embedded

import (
	"context"
	"fmt"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// RunControllerManager runs kube-controller-manager with argv-style flags
// until ctx ends. Leader election must be off (--leader-elect=false).
func RunControllerManager(ctx context.Context, args []string) error {
	ctx = klog.NewContext(ctx, klog.Background().WithName("kube-controller-manager"))
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	known := controllermanager.KnownControllers()
	disabled := controllermanager.ControllersDisabledByDefault()
	aliases := controllermanager.ControllerAliases()
	sets := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &sets
	if _, err := parseFlags("kube-controller-manager", sets, args); err != nil {
		return err
	}
	// It watches deprecated APIs on purpose; their warnings are noise.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if err := applyLogging("kube-controller-manager", s.Logs, utilfeature.DefaultFeatureGate); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if c.ComponentConfig.Generic.LeaderElection.LeaderElect {
		return fmt.Errorf("kube-controller-manager: leader election must be disabled when embedded")
	}
	if err := controllermanager.Run(ctx, c.Complete()); err != nil && ctx.Err() == nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	return nil
}
