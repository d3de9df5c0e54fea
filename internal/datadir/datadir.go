// Package datadir claims a data directory for one cluster process: it marks
// directories it created, refuses foreign ones, and holds an exclusive lock
// while the process runs.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// MarkerName is the file that says "this directory belongs to cluster".
const MarkerName = ".cluster-data-dir"

const lockName = ".lock"

// Lock is a held data directory.
type Lock struct {
	file *os.File
}

// Claim checks that dir is usable, creates it if needed, and locks it.
// A non-empty directory without our marker is refused so that a mistyped
// --data-dir never scatters state into someone else's files.
func Claim(dir string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir %s: %w", abs, err)
		}
	case err != nil:
		return nil, fmt.Errorf("data dir %s is not usable: %w", abs, err)
	case !st.IsDir():
		return nil, fmt.Errorf("data dir %s is not a directory", abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not readable: %w", abs, err)
	}
	marker := filepath.Join(abs, MarkerName)
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		if len(entries) > 0 && !onlySeeds(abs) {
			return nil, fmt.Errorf("data dir %s is not empty and was not created by cluster (no %s); choose an empty or new directory (before its first start it may hold only %s)", abs, MarkerName, strings.Join(seedDirs, ", "))
		}
		if err := os.WriteFile(marker, []byte("cluster data directory; do not remove\n"), 0o600); err != nil {
			return nil, fmt.Errorf("data dir %s is not writable: %w", abs, err)
		}
	}

	f, err := os.OpenFile(filepath.Join(abs, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not writable: %w", abs, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("data dir %s is in use by another cluster process (pid %s)", abs, pid)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{file: f}, nil
}

// seedDirs are what a user may put into a data directory before its first
// start, as k3s users do: image archives for an air-gapped node, containerd
// config drop-ins, and manifests for the server to apply.
var seedDirs = []string{"agent/images", "agent/etc/containerd/config.d", "server/manifests"}

// onlySeeds reports whether everything in dir lies in one of seedDirs (or is
// a directory on the way to one).
func onlySeeds(dir string) bool {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		for _, seed := range seedDirs {
			if rel == seed && d.IsDir() {
				return fs.SkipDir
			}
			if d.IsDir() && strings.HasPrefix(seed, rel+"/") {
				return nil
			}
		}
		return errNotSeed
	})
	return err == nil
}

var errNotSeed = errors.New("not a seed path")

// Release unlocks the directory.
func (l *Lock) Release() error {
	if l == nil || l.file == nil {
		return nil
	}
	err := l.file.Close() // closing drops the flock
	l.file = nil
	return err
}
