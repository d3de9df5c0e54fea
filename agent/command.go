// Package agent implements `cluster agent`: a worker node that joins a server.
package agent

import (
	"errors"

	"github.com/spf13/cobra"
)

// NewCommand returns `cluster agent`. The node components arrive with the
// node issue; until then the command says so instead of pretending.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run a worker node that joins a server (not implemented yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("cluster agent is not implemented yet")
		},
	}
}
