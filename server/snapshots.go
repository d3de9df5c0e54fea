package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/server/etcdsnapshot"
	"github.com/cluster-io/cluster/server/options"
)

// snapshotClientConfig reaches this data dir's etcd member on loopback with
// its client certificate.
func snapshotClientConfig(dataDir string) (clientv3.Config, error) {
	abs, _ := filepath.Abs(dataDir)
	serverDir := filepath.Join(abs, "server")
	if !datastore.HasMember(etcdDir(serverDir)) {
		return clientv3.Config{}, fmt.Errorf("%s holds no embedded etcd: snapshots are of servers started with --cluster-init or --server", abs)
	}
	e := &datastore.Etcd{}
	tlsConfig, err := datastore.ClientTLS(etcdTLS(newPaths(serverDir).tls))
	if err != nil {
		return clientv3.Config{}, err
	}
	return clientv3.Config{Endpoints: e.Endpoints(), TLS: tlsConfig, DialTimeout: 10 * time.Second, Logger: zap.NewNop()}, nil
}

// takeSnapshot saves one snapshot and, if retention > 0, prunes the older
// ones of the same name and node.
func takeSnapshot(ctx context.Context, dataDir, dir, name, node string, retention int) (etcdsnapshot.Snapshot, []string, error) {
	cfg, err := snapshotClientConfig(dataDir)
	if err != nil {
		return etcdsnapshot.Snapshot{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	snap, err := etcdsnapshot.Save(ctx, cfg, dir, name, node, time.Now())
	if err != nil {
		return snap, nil, err
	}
	if retention <= 0 {
		return snap, nil, nil
	}
	pruned, err := etcdsnapshot.Prune(dir, name+"-"+node, retention)
	return snap, pruned, err
}

// scheduledSnapshots is the server's snapshot schedule.
func scheduledSnapshots(dataDir, node string, o options.EtcdSnapshots) func(context.Context) error {
	return func(ctx context.Context) error {
		schedule, err := cron.ParseStandard(o.ScheduleCron)
		if err != nil {
			return err
		}
		dir := o.SnapshotDir(dataDir)
		for {
			next := schedule.Next(time.Now())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(next)):
			}
			snap, pruned, err := takeSnapshot(ctx, dataDir, dir, options.DefaultSnapshotName, node, o.Retention)
			if err != nil {
				etcdLog.Errorf("scheduled snapshot: %v", err)
				continue
			}
			etcdLog.Infof("scheduled snapshot %s (%d bytes); pruned %d older", snap.Path, snap.Size, len(pruned))
		}
	}
}

// NewEtcdSnapshotCommand is `cluster etcd-snapshot`.
func NewEtcdSnapshotCommand() *cobra.Command {
	dataDir := options.DefaultDataDir
	var snapOpts options.EtcdSnapshots
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Save, list, delete and prune snapshots of the embedded etcd (run on a server)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", dataDir, "The server's data dir")
	cmd.PersistentFlags().StringVar(&snapOpts.Dir, "etcd-snapshot-dir", "", "Folder of snapshots (default <data-dir>/server/db/snapshots)")
	var nodeName string
	cmd.PersistentFlags().StringVar(&nodeName, "node-name", "", "The server's node name, part of snapshot names (default: the hostname)")

	var name string
	save := &cobra.Command{
		Use:   "save",
		Short: "Take a snapshot now, as <name>-<node>-<unix time>",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := etcdsnapshot.ValidateName(name); err != nil {
				return err
			}
			snap, _, err := takeSnapshot(cmd.Context(), dataDir, snapOpts.SnapshotDir(dataDir), name, agent.NodeName(nodeName), 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s (%d bytes)\n", snap.Path, snap.Size)
			return nil
		},
	}
	save.Flags().StringVar(&name, "name", options.DefaultSnapshotName, "Name prefix of the snapshot")

	list := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the snapshots, oldest first",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := snapOpts.SnapshotDir(dataDir)
			snaps, err := etcdsnapshot.List(dir)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "Name\tLocation\tSize\tCreated")
			for _, s := range snaps {
				fmt.Fprintf(w, "%s\tfile://%s\t%d\t%s\n", s.Name, s.Path, s.Size, s.Created.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		},
	}

	del := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete snapshots by name",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			if err := etcdsnapshot.Delete(snapOpts.SnapshotDir(dataDir), names); err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", n)
			}
			return nil
		},
	}

	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete the oldest snapshots of --name on this node beyond --etcd-snapshot-retention",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := etcdsnapshot.ValidateName(name); err != nil {
				return err
			}
			if snapOpts.Retention < 1 {
				return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1", snapOpts.Retention)
			}
			dir := snapOpts.SnapshotDir(dataDir)
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no snapshot folder %s", dir)
			}
			deleted, err := etcdsnapshot.Prune(dir, name+"-"+agent.NodeName(nodeName), snapOpts.Retention)
			for _, n := range deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", n)
			}
			return err
		},
	}
	prune.Flags().StringVar(&name, "name", options.DefaultSnapshotName, "Name prefix of the snapshots to prune")
	prune.Flags().IntVar(&snapOpts.Retention, "etcd-snapshot-retention", options.DefaultSnapshotRetention, "Number of snapshots to keep")

	cmd.AddCommand(save, list, del, prune)
	return cmd
}
