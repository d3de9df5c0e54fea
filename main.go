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
	"github.com/cluster-io/cluster/internal/memtrim"
	"github.com/cluster-io/cluster/internal/preflight"
	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server"
	"github.com/cluster-io/cluster/server/bootstraptoken"
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
	memtrim.SetStartGC()
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
		bootstraptoken.NewCommand(options.DefaultKubeconfig),
		preflight.NewCommand(options.DefaultDataDir, agent.ProxyMode),
		server.NewEtcdSnapshotCommand(),
		passThrough("kubectl", "Run kubectl (defaults to the admin kubeconfig)",
			func(args []string) { os.Exit(embedded.RunKubectl(args, options.DefaultKubeconfig)) }),
		passThrough("ctr", "Run ctr against the node's containerd (namespace k8s.io; CLUSTER_DATA_DIR picks the node)", runCtr),
		passThrough("crictl", "Run crictl against the node's containerd (CLUSTER_DATA_DIR picks the node)", execCrictl),
		newVersionCommand(),
	)
	return root
}

// passThrough is a subcommand that hands its arguments, flags included, to
// an upstream tool.
func passThrough(use, short string, run func(args []string)) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { run(args) },
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
