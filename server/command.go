package server

import (
	"github.com/spf13/cobra"

	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server/options"
)

// NewCommand returns `cluster server`.
func NewCommand() *cobra.Command {
	opts := &options.Server{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Kubernetes control plane (and, unless --disable-agent, this node)",
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
