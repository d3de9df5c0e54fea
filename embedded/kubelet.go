package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
)

// RunKubelet parses argv as the kubelet command does (including --config and
// the flag-over-file precedence) and runs the kubelet until ctx ends.
// Upstream's command is not used because it calls SetupSignalContext. Many
// kubelet goroutines and its servers outlive ctx: a cancelled kubelet means
// the process is about to exit.
func RunKubelet(ctx context.Context, args []string) error {
	ctx = klog.NewContext(ctx, klog.Background().WithName("kubelet"))
	kf, kc, err := kubeletConfiguration(ctx, args)
	if err != nil {
		return err
	}
	fg := utilfeature.DefaultMutableFeatureGate
	if err := applyLogging("kubelet", &kc.Logging, fg); err != nil {
		return err
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, fg); err != nil {
		return fmt.Errorf("kubelet configuration: %w", err)
	}
	s := &kubeletoptions.KubeletServer{KubeletFlags: *kf, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, s, fg)
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	if err := kubeletapp.Run(ctx, s, deps, fg); err != nil && ctx.Err() == nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	return nil
}

// kubeletConfiguration parses argv and the --config file as the kubelet
// command does (flags win over the file) and sets the feature gates.
func kubeletConfiguration(ctx context.Context, args []string) (*kubeletoptions.KubeletFlags, *kubeletconfig.KubeletConfiguration, error) {
	kf := kubeletoptions.NewKubeletFlags()
	kc, err := kubeletoptions.NewKubeletConfiguration()
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet: %w", err)
	}
	fs := kubeletFlagSet(kf, kc, false)
	if err := fs.Parse(args); err != nil {
		return nil, nil, fmt.Errorf("kubelet flags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("kubelet flags: unexpected argument %q", fs.Arg(0))
	}
	fg := utilfeature.DefaultMutableFeatureGate // shared with the control plane
	if err := fg.SetFromMap(kc.FeatureGates); err != nil {
		return nil, nil, fmt.Errorf("kubelet: %w", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(kf); err != nil {
		return nil, nil, fmt.Errorf("kubelet flags: %w", err)
	}
	if kf.KubeletDropinConfigDirectory != "" {
		return nil, nil, errors.New("kubelet: --config-dir is not supported; use --kubelet-arg flags")
	}
	if kf.KubeletConfigFile != "" {
		if kc, err = loadKubeletConfig(ctx, kf.KubeletConfigFile); err != nil {
			return nil, nil, fmt.Errorf("kubelet: %w", err)
		}
		// Flags win over the file, as upstream does it.
		fileGates := kc.FeatureGates
		again := kubeletFlagSet(kubeletoptions.NewKubeletFlags(), kc, true)
		again.SetOutput(io.Discard)
		if err := again.Parse(args); err != nil {
			return nil, nil, fmt.Errorf("kubelet flags: %w", err)
		}
		for k, v := range fileGates {
			if _, ok := kc.FeatureGates[k]; !ok {
				kc.FeatureGates[k] = v
			}
		}
		if err := fg.SetFromMap(kc.FeatureGates); err != nil {
			return nil, nil, fmt.Errorf("kubelet: %w", err)
		}
	}
	return kf, kc, nil
}

// kubeletFlagSet mirrors the kubelet command's flag set; with noopGlobals
// the global (logging) flags are accepted and ignored, for the second pass.
func kubeletFlagSet(kf *kubeletoptions.KubeletFlags, kc *kubeletconfig.KubeletConfiguration, noopGlobals bool) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	kf.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	// A configuration field upstream has no flag for; `cluster` changes
	// its default, so --kubelet-arg must be able to set it back.
	fs.Int32Var(&kc.NodeLeaseDurationSeconds, "node-lease-duration-seconds", kc.NodeLeaseDurationSeconds,
		"Duration of the node Lease in seconds; the kubelet renews it every quarter of that.")
	if !noopGlobals {
		kubeletoptions.AddGlobalFlags(fs)
		return fs
	}
	globals := pflag.NewFlagSet("", pflag.ContinueOnError)
	kubeletoptions.AddGlobalFlags(globals)
	globals.VisitAll(func(f *pflag.Flag) {
		if fs.Lookup(f.Name) == nil {
			fs.VarP(cliflag.NoOp{}, f.Name, f.Shorthand, f.Usage)
		}
	})
	return fs
}

func loadKubeletConfig(ctx context.Context, name string) (*kubeletconfig.KubeletConfiguration, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, abs)
	if err != nil {
		return nil, err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return nil, err
	}
	if kc.EvictionHard == nil {
		kc.EvictionHard = maps.Clone(eviction.DefaultEvictionHard)
	} else if kc.MergeDefaultEvictionSettings {
		for k, v := range eviction.DefaultEvictionHard {
			if _, ok := kc.EvictionHard[k]; !ok {
				kc.EvictionHard[k] = v
			}
		}
	}
	return kc, nil
}
