package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// RunKubeProxy parses argv as kube-proxy does and runs it until ctx ends.
// kube-proxy has no shutdown: its loops, rules and servers outlive ctx, so a
// cancelled kube-proxy means the process is about to exit.
func RunKubeProxy(ctx context.Context, args []string) error {
	ctx = klog.NewContext(ctx, klog.Background().WithName("kube-proxy"))
	o := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-proxy flags: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kube-proxy flags: unexpected argument %q", fs.Arg(0))
	}
	if o.ConfigFile != "" || o.WriteConfigTo != "" || o.CleanupAndExit || o.InitAndExit {
		return errors.New("kube-proxy: --config, --write-config-to, --cleanup and --init-only are not supported in-process")
	}
	if err := o.Complete(fs); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- o.Run(ctx) }() // returns only when it cannot start
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kube-proxy: %w", err)
	case <-ctx.Done():
		return nil
	}
}
