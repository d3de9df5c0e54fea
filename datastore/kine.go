// Package datastore runs kine in-process: the etcd API the apiserver talks to,
// backed by SQLite (default), our bbolt driver (datastore/bolt), Postgres or
// MySQL.
package datastore

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/endpoint"

	"github.com/cluster-io/cluster/component"
	// Registers the bolt:// driver with kine.
	_ "github.com/cluster-io/cluster/datastore/bolt"
	"github.com/cluster-io/cluster/logging"
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

	cancel context.CancelFunc
	wg     sync.WaitGroup
	etcd   endpoint.ETCDConfig
	once   sync.Once
}

var _ component.Component = (*Kine)(nil)

// Name implements component.Component.
func (k *Kine) Name() string { return "kine" }

// DefaultSQLiteDSN is the DSN of the default datastore file.
func DefaultSQLiteDSN(dbDir string) string {
	return "sqlite://" + filepath.Join(dbDir, "state.db") + "?" + sqlite.DefaultParams
}

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
func (k *Kine) Start(context.Context) error {
	if k.Endpoint == "" {
		if err := os.MkdirAll(k.DBDir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", k.DBDir, err)
		}
	}
	// kine's lifetime is ours to end in Stop, after the apiserver.
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	cfg := endpoint.Config{
		Listener:         "unix://" + k.SocketPath,
		Endpoint:         k.dsn(),
		WaitGroup:        &k.wg,
		NotifyInterval:   5 * time.Second,
		CompactInterval:  5 * time.Minute,
		CompactTimeout:   5 * time.Second,
		CompactMinRetain: 1000,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     time.Second,
		// kine's CLI default; the apiserver checks the etcd version it sees.
		EmulatedETCDVersion: "3.6.11",
	}
	cfg.ConnectionPoolConfig.MaxIdle = 20
	cfg.ConnectionPoolConfig.MaxIdleTime = 2 * time.Minute
	etcd, err := endpoint.Listen(ctx, cfg)
	if err != nil {
		cancel()
		return err // the supervisor says "start kine: …"
	}
	k.etcd = etcd
	logging.For("kine").Infof("datastore %s serving etcd API at %s", k.describe(), strings.Join(etcd.Endpoints, ","))
	return nil
}

// describe names the backend without credentials.
func (k *Kine) describe() string {
	if k.Endpoint == "" {
		return "sqlite " + filepath.Join(k.DBDir, "state.db")
	}
	scheme, _, _ := strings.Cut(k.Endpoint, "://")
	return scheme
}

// Endpoints are the etcd URLs the apiserver uses.
func (k *Kine) Endpoints() []string { return k.etcd.Endpoints }

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
