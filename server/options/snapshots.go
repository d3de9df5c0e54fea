package options

import (
	"fmt"
	"path/filepath"

	"github.com/robfig/cron/v3"
	"github.com/spf13/pflag"
)

// Defaults of the scheduled etcd snapshots (k3s's).
const (
	DefaultSnapshotCron      = "0 */12 * * *"
	DefaultSnapshotRetention = 5
	DefaultSnapshotName      = "etcd-snapshot"
)

// EtcdSnapshots are the options of etcd snapshots, scheduled by the server
// and taken by `cluster etcd-snapshot`.
type EtcdSnapshots struct {
	DisableSnapshots bool
	ScheduleCron     string
	Retention        int
	Dir              string
}

// AddFlags registers the options with k3s's names.
func (o *EtcdSnapshots) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.DisableSnapshots, "etcd-disable-snapshots", false, "Take no scheduled etcd snapshots")
	fs.StringVar(&o.ScheduleCron, "etcd-snapshot-schedule-cron", DefaultSnapshotCron, "When to take etcd snapshots, in cron syntax")
	fs.IntVar(&o.Retention, "etcd-snapshot-retention", DefaultSnapshotRetention, "Number of scheduled snapshots to keep")
	fs.StringVar(&o.Dir, "etcd-snapshot-dir", "", "Folder of etcd snapshots (default <data-dir>/server/db/snapshots)")
}

// Validate checks the schedule and the retention.
func (o *EtcdSnapshots) Validate() error {
	if _, err := cron.ParseStandard(o.ScheduleCron); err != nil {
		return fmt.Errorf("--etcd-snapshot-schedule-cron %q: %v (want five fields, e.g. %q)", o.ScheduleCron, err, DefaultSnapshotCron)
	}
	if o.Retention < 1 {
		return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1", o.Retention)
	}
	return nil
}

// SnapshotDir is --etcd-snapshot-dir or its default under dataDir.
func (o *EtcdSnapshots) SnapshotDir(dataDir string) string {
	if o.Dir != "" {
		return o.Dir
	}
	abs, _ := filepath.Abs(dataDir)
	return filepath.Join(abs, "server", "db", "snapshots")
}
