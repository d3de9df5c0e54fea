// Package agent implements `cluster agent`, a worker node that joins a
// server, and the node side that `cluster server` runs in its own process.
package agent

import (
	"github.com/spf13/cobra"

	"github.com/cluster-io/cluster/agent/options"
	"github.com/cluster-io/cluster/logging"
)

// NewCommand returns `cluster agent`.
func NewCommand() *cobra.Command {
	opts := &options.Agent{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a worker node that joins a server (--server, --token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Load(cmd, nil); err != nil {
				return err
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			logging.Setup(opts.Debug)
			return Run(cmd.Context(), opts)
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
