package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/cluster-io/cluster/embedded"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("containerd")

// Daemon runs the node's containerd in this process (embedded.Containerd)
// rather than as a child re-executing this binary: a child held its own
// copy of the ~1,500 packages' init-time heap (~10 MB), its own collector
// and its own share of the binary's pages (idle PSS ~20 MB more in all).
// The containers' shims are started in process groups of their own, so
// they and the pods survive a restart of `cluster`. A containerd panic now
// ends the whole process; the service manager restarts it, and the pods
// keep running.
type Daemon struct {
	ConfigPath string
	// DropInDir holds the user's *.toml files that config.toml imports;
	// each is checked first, so a broken one is named in the error.
	DropInDir string
	// BinDir goes first on this process's PATH, which the shims containerd
	// starts inherit: they look up runc there.
	BinDir string

	mu      sync.Mutex
	ctrd    *embedded.Containerd
	started chan struct{} // closed when the plugins are loaded and the sockets open (or that failed)
	err     error         // why the start failed; read after started is closed
}

// Name implements component.Component.
func (d *Daemon) Name() string { return "containerd" }

// Start loads containerd's plugins in the background: opening its
// database waits for another containerd that still holds it, and the
// manager's Ready timeout, not Start, should bound that.
func (d *Daemon) Start(ctx context.Context) error {
	if err := os.Setenv("PATH", prependPath(d.BinDir, os.Getenv("PATH"))); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	if err := checkDropIns(d.DropInDir); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	d.started = make(chan struct{})
	go func() {
		defer close(d.started)
		ctrd, err := embedded.NewContainerd(context.WithoutCancel(ctx), d.ConfigPath, log)
		if err == nil {
			err = ctrd.Start(context.WithoutCancel(ctx))
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.ctrd, d.err = ctrd, err
		if err != nil {
			d.err = fmt.Errorf("start containerd: %w", err)
		}
	}()
	return nil
}

// Ready waits until containerd's sockets are open and its plugins ready.
func (d *Daemon) Ready(ctx context.Context) error {
	select {
	case <-d.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	ctrd, err := d.ctrd, d.err
	d.mu.Unlock()
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() { ctrd.Wait(); close(ready) }()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop closes containerd's plugins; containers keep running.
func (d *Daemon) Stop() error {
	if d.started == nil {
		return nil
	}
	select {
	case <-d.started:
	case <-time.After(10 * time.Second):
		return errors.New("containerd: still starting after 10s; not stopped")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctrd != nil {
		d.ctrd.Stop()
		d.ctrd = nil
	}
	return nil
}

// prependPath puts dir first on the PATH list path, once.
func prependPath(dir, path string) string {
	rest := slices.DeleteFunc(filepath.SplitList(path), func(d string) bool { return d == dir || d == "" })
	return strings.Join(append([]string{dir}, rest...), string(os.PathListSeparator))
}

// checkDropIns parses each *.toml in dir: containerd's own error for a
// broken import names config.toml, with the row and column of the import.
func checkDropIns(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil || dir == "" {
		return err
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("drop-in: %w", err)
		}
		var v map[string]any
		if err := toml.Unmarshal(text, &v); err != nil {
			return fmt.Errorf("drop-in %s: %w (fix or remove the file)", f, err)
		}
	}
	return nil
}
