// Package embedded runs upstream Kubernetes daemons in this process.
//
// Each file wraps one daemon: it builds the daemon's own flag set, parses
// argv-style flags, and calls the daemon's exported Run with a context we
// control. There is no policy here: server/ and agent/ decide the flags.
//
// We do not call the upstream cobra commands' RunE: each of them installs
// its own SIGTERM handler (k8s.io/apiserver SetupSignalContext, which may be
// called only once per process) and some call os.Exit, which would break
// our ordered shutdown.
package embedded

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

func init() {
	// Three daemons apply the same logging configuration in one process;
	// upstream refuses a second apply unless told that identical is fine.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

// parseFlags parses args into a flag set holding every named set.
func parseFlags(daemon string, sets cliflag.NamedFlagSets, args []string) (*pflag.FlagSet, error) {
	fs := pflag.NewFlagSet(daemon, pflag.ContinueOnError)
	for _, name := range sets.Order {
		fs.AddFlagSet(sets.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%s flags: %w", daemon, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%s flags: unexpected argument %q", daemon, fs.Arg(0))
	}
	return fs, nil
}

// applyLogging validates and applies a daemon's logging configuration.
// Logging (klog) is one per process: the first daemon to start (the
// apiserver) sets it, e.g. with --kube-apiserver-arg=v=2. A later daemon
// whose logging flags differ keeps running with that setting and says so,
// instead of failing its start.
func applyLogging(daemon string, c *logsapi.LoggingConfiguration, fg featuregate.FeatureGate) error {
	if errs := logsapi.Validate(c, fg, nil); len(errs) > 0 {
		return fmt.Errorf("%s logging: %w", daemon, errs.ToAggregate())
	}
	if err := logsapi.ValidateAndApply(c, fg); err != nil {
		klog.Warningf("%s: its logging flags are ignored: logging is shared by every daemon in this process and was set by the first one (%s)", daemon, strings.SplitN(err.Error(), "\n", 2)[0])
	}
	return nil
}
