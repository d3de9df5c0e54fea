// Command cluster is a single-binary Kubernetes distribution: `cluster server`
// runs the upstream control plane (and the node) in one process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/embedded"
	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server"
	"github.com/cluster-io/cluster/server/options"
	"github.com/cluster-io/cluster/version"
)

func main() {
	// Multicall: through a symlink named kubectl, the binary is kubectl.
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		os.Exit(embedded.RunKubectl(os.Args[1:], options.DefaultKubeconfig))
	case "ctr":
		runCtr(os.Args[1:])
	case "crictl":
		execCrictl(os.Args[1:])
	}

	logging.Setup(false)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", oneLine(err.Error()))
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "cluster",
		Short:         "A single-binary Kubernetes distribution",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(
		server.NewCommand(),
		agent.NewCommand(),
		newKubectlCommand(),
		newCtrCommand(),
		newCrictlCommand(),
		newContainerdCommand(),
		newVersionCommand(),
	)
	return root
}

func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl",
		Short:              "Run kubectl (defaults to the admin kubeconfig)",
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(embedded.RunKubectl(args, options.DefaultKubeconfig))
		},
	}
}

func newCtrCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "ctr",
		Short:              "Run ctr against the node's containerd (namespace k8s.io; CLUSTER_DATA_DIR picks the node)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { runCtr(args) },
	}
}

func newCrictlCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "crictl",
		Short:              "Run crictl against the node's containerd (CLUSTER_DATA_DIR picks the node)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { execCrictl(args) },
	}
}

// nodeDataDir is the data dir the node tools talk to.
func nodeDataDir() string {
	if d := os.Getenv("CLUSTER_DATA_DIR"); d != "" {
		return d
	}
	return options.DefaultDataDir
}

func runCtr(args []string) {
	if err := embedded.RunCtr(agent.Layout(nodeDataDir()).ContainerdSocket, args); err != nil {
		fmt.Fprintf(os.Stderr, "ctr: %s\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func execCrictl(args []string) {
	err := agent.ExecCrictl(nodeDataDir(), args) // returns only on failure
	fmt.Fprintf(os.Stderr, "%s\n", err)
	os.Exit(1)
}

// newContainerdCommand is how the node re-executes this binary as its
// containerd child process; not for users.
func newContainerdCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "containerd",
		Short:              "Run containerd (started by the node; internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			if err := embedded.RunContainerd(args); err != nil {
				fmt.Fprintf(os.Stderr, "containerd: %s\n", err)
				os.Exit(1)
			}
		},
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the cluster and Kubernetes versions",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "cluster version %s (%s)\nKubernetes %s\n", version.Version, version.GitCommit, version.Kubernetes)
		},
	}
}

// oneLine folds a multi-line error so the user sees one clear line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
