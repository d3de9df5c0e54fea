package embedded

import (
	"context"
	"fmt"
	"os"
	"sync"
	_ "unsafe" // go:linkname, below

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	_ "k8s.io/apiserver/pkg/storage/storagebackend/factory" // defines newETCD3Client
)

// EnvSharedETCDClient names the environment variable that turns the
// sharing below off ("off": one etcd client, and connection, per resource,
// as upstream has it).
const EnvSharedETCDClient = "CLUSTER_SHARED_ETCD_CLIENT"

// newETCD3Client is the apiserver storage factory's etcd client constructor,
// a package variable upstream so that its tests can replace it. The
// factory calls it once for every resource's storage (and for each CRD's),
// once for the compactor and once for each health and size prober
// (kubernetes#111622).
//
//go:linkname newETCD3Client k8s.io/apiserver/pkg/storage/storagebackend/factory.newETCD3Client
var newETCD3Client func(storagebackend.TransportConfig) (*kubernetes.Client, error)

var shareETCDClientsOnce sync.Once

// shareETCDClients makes the apiserver's storages share one etcd client
// connection per datastore (per transport config), unless
// EnvSharedETCDClient is "off". Upstream dials one gRPC connection for every
// resource: ~70 connections to the in-process kine, each with its buffers,
// ~10 goroutines at both ends and keepalive pings every 30 s. etcd's client
// multiplexes any number of requests and watches over one connection.
// Process-wide, like the variable it sets; call it before the apiserver
// builds its storage.
func shareETCDClients() error {
	switch v := os.Getenv(EnvSharedETCDClient); v {
	case "", "on":
	case "off":
		return nil
	default:
		return fmt.Errorf("%s=%q: want off (one etcd client per resource, as upstream) or on", EnvSharedETCDClient, v)
	}
	shareETCDClientsOnce.Do(func() {
		shared := &etcdClients{dial: newETCD3Client, conns: map[string]*etcdConn{}}
		newETCD3Client = shared.client
	})
	return nil
}

// etcdClients hands out clients that share one connection per transport.
type etcdClients struct {
	dial func(storagebackend.TransportConfig) (*kubernetes.Client, error) // upstream's

	mu    sync.Mutex
	conns map[string]*etcdConn // by transport, as upstream keys its compactors
}

type etcdConn struct {
	client *kubernetes.Client // dialled by upstream's constructor; its own Watcher and Lease go unused
	users  int                // clients handed out and not yet closed
}

// client returns a client of its own over the transport's shared
// connection. What its user changes or closes is its own: the apiserver
// wraps each client's KV in a latency tracker, and a storage's destroy
// (a CRD's, when the CRD goes) closes its client, its watches and its
// lease grants. The connection is closed with the last client on it.
func (e *etcdClients) client(c storagebackend.TransportConfig) (*kubernetes.Client, error) {
	key := fmt.Sprintf("%v", c)
	e.mu.Lock()
	defer e.mu.Unlock()
	conn := e.conns[key]
	if conn == nil {
		dialled, err := e.dial(c)
		if err != nil {
			return nil, err
		}
		conn = &etcdConn{client: dialled}
		e.conns[key] = conn
	}
	conn.users++
	base := conn.client.Client
	own := clientv3.NewCtxClient(context.Background(), clientv3.WithZapLogger(base.GetLogger()))
	own.KV = clientv3.NewKV(base)
	own.Watcher = clientv3.NewWatcher(base)
	own.Lease = clientv3.NewLease(base)
	own.Cluster = base.Cluster
	own.Maintenance = base.Maintenance
	own.Auth = base.Auth
	// Close cancels own's context (besides closing its watcher and lessor).
	context.AfterFunc(own.Ctx(), func() { e.release(key, conn) })
	kc := &kubernetes.Client{Client: own}
	kc.Kubernetes = kc
	return kc, nil
}

func (e *etcdClients) release(key string, conn *etcdConn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	conn.users--
	if conn.users > 0 {
		return
	}
	if e.conns[key] == conn {
		delete(e.conns, key)
	}
	_ = conn.client.Close() // the storages that used it are gone
}
