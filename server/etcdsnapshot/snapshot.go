// Package etcdsnapshot saves, lists, deletes, prunes and restores snapshots
// of the embedded etcd. Snapshots are taken through etcd's snapshot API
// (consistent, with etcd's checksum appended) and restored with etcdutl's
// restore, which verifies that checksum. Files are named as k3s names them:
// <name>-<node>-<unix seconds>.
package etcdsnapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Snapshot is one snapshot file.
type Snapshot struct {
	Name    string
	Path    string
	Size    int64
	Created time.Time
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// ValidateName checks a --name: it becomes part of a file name.
func ValidateName(name string) error {
	if !validName.MatchString(name) || len(name) > 100 {
		return fmt.Errorf("--name %q: use lower-case letters, digits, '-' and '.' (at most 100)", name)
	}
	return nil
}

// Save takes a snapshot of the member cfg names (one endpoint) into
// dir/<name>-<node>-<unix seconds>.
func Save(ctx context.Context, cfg clientv3.Config, dir, name, node string, now time.Time) (Snapshot, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot dir: %w", err)
	}
	file := fmt.Sprintf("%s-%s-%d", name, node, now.Unix())
	path := filepath.Join(dir, file)
	if _, err := os.Stat(path); err == nil {
		return Snapshot{}, fmt.Errorf("snapshot %s exists already (one per name and second)", path)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if _, err := snapshot.SaveWithVersion(ctx, cfg.Logger, cfg, path); err != nil {
		return Snapshot{}, fmt.Errorf("save snapshot: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Name: file, Path: path, Size: fi.Size(), Created: fi.ModTime()}, nil
}

// List returns the snapshots in dir, oldest first.
func List(dir string) ([]Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".part") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Snapshot{Name: e.Name(), Path: filepath.Join(dir, e.Name()), Size: fi.Size(), Created: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Delete removes the named snapshots; it removes none if one is missing.
func Delete(dir string, names []string) error {
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, `/\`) || n == "." || n == ".." {
			return fmt.Errorf("%q is not a snapshot name (see 'cluster etcd-snapshot ls')", n)
		}
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("no snapshot %s in %s (see 'cluster etcd-snapshot ls')", n, dir)
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// Prune deletes the oldest snapshots whose names start with prefix+"-",
// keeping the newest keep of them; it returns the names it deleted.
func Prune(dir, prefix string, keep int) ([]string, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var mine []Snapshot
	for _, s := range all {
		if strings.HasPrefix(s.Name, prefix+"-") {
			mine = append(mine, s)
		}
	}
	var deleted []string
	for i := 0; i < len(mine)-keep; i++ {
		if err := os.Remove(mine[i].Path); err != nil {
			return deleted, err
		}
		deleted = append(deleted, mine[i].Name)
	}
	return deleted, nil
}

// Restore makes dataDir (which must not exist) an etcd data dir holding
// the snapshot as a cluster of one member, after checking the snapshot's
// checksum.
func Restore(snapshotPath, dataDir, member, peerURL string) error {
	return etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        snapshotPath,
		Name:                member,
		OutputDataDir:       dataDir,
		PeerURLs:            []string{peerURL},
		InitialCluster:      member + "=" + peerURL,
		InitialClusterToken: "cluster",
		// Clients (informers on every node) hold revisions newer than the
		// snapshot's: moving past them and marking the rest compacted makes
		// them list again instead of missing changes.
		RevisionBump:  1_000_000_000,
		MarkCompacted: true,
	})
}
