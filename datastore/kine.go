// Package datastore runs kine in-process: the etcd API the apiserver talks to,
// backed by SQLite (default), our bbolt driver (datastore/bolt), Postgres or
// MySQL.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	// The drivers --datastore-endpoint offers. kine's endpoint package would
	// link every driver kine has (an embedded NATS server, pebble, S3
	// clients): size every download pays for, so the server is wired here.
	_ "github.com/k3s-io/kine/pkg/drivers/mysql"
	_ "github.com/k3s-io/kine/pkg/drivers/pgsql"
	_ "github.com/k3s-io/kine/pkg/drivers/remote"
	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/cluster-io/cluster/component"
	// Registers the bolt:// driver with kine.
	_ "github.com/cluster-io/cluster/datastore/bolt"
	"github.com/cluster-io/cluster/logging"
)

// etcd's server defaults, which kine's own endpoint applies too.
const (
	maxRequestBytes   = 1.5 * 1024 * 1024
	grpcOverheadBytes = 512 * 1024
	stopGrace         = 2 * time.Second
)

// Kine is the datastore component. The apiserver reaches it on a unix socket
// only, so the datastore is never exposed on the network.
type Kine struct {
	// Endpoint is the user's --datastore-endpoint; "" means SQLite in DBDir.
	Endpoint string
	// DBDir holds state.db for the default SQLite datastore.
	DBDir string
	// SocketPath is where kine listens.
	SocketPath string

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	endpoints []string
	once      sync.Once
}

var _ component.Component = (*Kine)(nil)

// Name implements component.Component.
func (k *Kine) Name() string { return "kine" }

// DefaultSQLiteDSN is the DSN of the default datastore file. It adds to
// kine's tuning SQLite's unix-excl VFS: the server process holds the file
// alone, and SQLite keeps the WAL index in memory instead of in state.db-shm,
// a mapped file whose pages every commit dirtied — about 20 kB written per
// Lease renewal, as much as the WAL itself (measured with kine's schema). No
// other process can open the file while the server runs; a user who needs
// that names the file with --datastore-endpoint sqlite://…, which gets
// kine's plain defaults.
func DefaultSQLiteDSN(dbDir string) string {
	return "sqlite://" + filepath.Join(dbDir, "state.db") + "?" + sqlite.DefaultParams + "&" + exclusiveVFS
}

// sqliteDir is the directory of a sqlite:// endpoint's file, or "".
func sqliteDir(endpoint string) string {
	path, ok := strings.CutPrefix(endpoint, "sqlite://")
	if !ok {
		return ""
	}
	path, _, _ = strings.Cut(path, "?")
	if path == "" {
		return ""
	}
	return filepath.Dir(path)
}

// exclusiveVFS is the DSN parameter of the default SQLite datastore.
const exclusiveVFS = "vfs=unix-excl"

// dsn returns the kine endpoint, adding kine's SQLite tuning to a bare sqlite:// path.
func (k *Kine) dsn() string {
	if k.Endpoint == "" {
		return DefaultSQLiteDSN(k.DBDir)
	}
	if strings.HasPrefix(k.Endpoint, "sqlite://") && !strings.Contains(k.Endpoint, "?") {
		return k.Endpoint + "?" + sqlite.DefaultParams
	}
	return k.Endpoint
}

// Start implements component.Component.
func (k *Kine) Start(startCtx context.Context) error {
	if k.Endpoint == "" {
		if err := os.MkdirAll(k.DBDir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", k.DBDir, err)
		}
		if err := useSmallPages(filepath.Join(k.DBDir, "state.db")); err != nil {
			return err
		}
	} else if dir := sqliteDir(k.Endpoint); dir != "" {
		// SQLite creates the file, not its directory; kine would retry
		// "unable to open database file" forever.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("--datastore-endpoint: create %s: %w", dir, err)
		}
	}
	// kine's lifetime is ours to end in Stop, after the apiserver.
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	// Until it serves, a stop request (SIGTERM while an external database
	// cannot be reached: kine retries forever) ends the start too.
	stopWatching := context.AfterFunc(startCtx, cancel)
	err := k.serve(ctx)
	stopWatching()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		k.wg.Wait()
		return err // the supervisor says "start kine: …"
	}
	logging.For("kine").Infof("datastore %s serving etcd API at %s", k.Describe(), strings.Join(k.endpoints, ","))
	return nil
}

// serve opens the backend and serves kine's etcd API on the unix socket,
// as kine's endpoint.Listen does; an http(s) endpoint is an etcd of the
// user's, which the apiserver uses directly.
func (k *Kine) serve(ctx context.Context) error {
	cfg := &drivers.Config{
		Endpoint:         k.dsn(),
		CompactInterval:  5 * time.Minute,
		CompactTimeout:   5 * time.Second,
		CompactMinRetain: 1000,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     k.pollInterval(),
	}
	cfg.ConnectionPoolConfig.MaxIdle = 20
	cfg.ConnectionPoolConfig.MaxIdleTime = 2 * time.Minute
	_, backend, err := drivers.New(ctx, &k.wg, cfg)
	if err != nil {
		// Never print the DSN: it may hold a password.
		return fmt.Errorf("datastore %s: %w", k.Describe(), err)
	}
	if backend == nil {
		k.endpoints = strings.Split(k.Endpoint, ",")
		return nil
	}
	srv := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.MaxRecvMsgSize(maxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
	)
	if err := backend.Start(ctx); err != nil {
		return fmt.Errorf("start the datastore: %w", err)
	}
	// kine's CLI defaults; the apiserver checks the etcd version it sees.
	server.New(backend, "unix", 5*time.Second, "3.6.11").Register(srv)
	if err := os.Remove(k.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", k.SocketPath)
	if err != nil {
		return err
	}
	if err := os.Chmod(k.SocketPath, 0o600); err != nil {
		l.Close()
		return err
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			logging.For("kine").Errorf("etcd API server: %v", err)
		}
	}()
	go func() {
		<-ctx.Done()
		timer := time.AfterFunc(stopGrace, srv.Stop)
		defer timer.Stop()
		srv.GracefulStop()
	}()
	k.endpoints = []string{"unix://" + k.SocketPath}
	return nil
}

// pollInterval is how often kine looks in the database for rows it did
// not write itself. kine learns of its own writes at once (they wake its
// poll loop), so only a database other processes write needs the 1 s poll
// of kine's CLI. The default SQLite file is held by this process alone
// (unix-excl), and a poll there found nothing every second: ~60 SQL
// queries a minute (a plain idle loop measured 0.6–0.9 CPU-s/min less; the
// footprint bench did not show it). The slow poll is a safety net: a
// revision gap (not expected with one writer) would hold watches back
// until the next poll, and so is the first write after the loop starts
// (kine spends that wake-up preparing its query; a start writes on, so it
// does not wait there).
func (k *Kine) pollInterval() time.Duration {
	if k.Endpoint == "" {
		return exclusivePollInterval
	}
	return time.Second
}

// exclusivePollInterval is the poll interval of the default SQLite datastore.
const exclusivePollInterval = 10 * time.Second

// Describe names the backend without credentials.
func (k *Kine) Describe() string {
	if k.Endpoint == "" {
		return "sqlite " + filepath.Join(k.DBDir, "state.db")
	}
	scheme, _, _ := strings.Cut(k.Endpoint, "://")
	return scheme
}

// Endpoints are the etcd URLs the apiserver uses.
func (k *Kine) Endpoints() []string { return k.endpoints }

// Ready implements component.Component: the socket accepts connections.
func (k *Kine) Ready(ctx context.Context) error {
	return component.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", k.SocketPath)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Stop implements component.Component: it stops serving and closes the
// database, waiting for kine's goroutines to finish.
func (k *Kine) Stop() error {
	if k.cancel == nil {
		return nil
	}
	var err error
	k.once.Do(func() {
		k.cancel()
		done := make(chan struct{})
		go func() { k.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			err = fmt.Errorf("datastore did not close within 15s")
		}
	})
	return err
}
