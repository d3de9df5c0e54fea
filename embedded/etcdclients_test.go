package embedded

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apiserver/pkg/storage/storagebackend"

	"github.com/cluster-io/cluster/datastore"
)

// upstream's constructor, before any test installs the sharing.
var upstreamNewETCD3Client = newETCD3Client

// countingKV stands for the latency tracker the apiserver wraps around
// each client's KV.
type countingKV struct {
	clientv3.KV
	calls atomic.Int32
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.calls.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

// The storages' clients share one connection, yet each one's KV, watches
// and close are its own; the connection goes with the last client, and a
// client after that dials again.
func TestETCDClientsShareOneConnection(t *testing.T) {
	dir := t.TempDir()
	kine := &datastore.Kine{DBDir: filepath.Join(dir, "db"), SocketPath: filepath.Join(dir, "kine.sock")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kine.Start(ctx); err != nil {
		t.Fatalf("start kine: %v", err)
	}
	defer func() { _ = kine.Stop() }()
	transport := storagebackend.TransportConfig{ServerList: kine.Endpoints()}

	var dials []*kubernetes.Client
	shared := &etcdClients{conns: map[string]*etcdConn{}, dial: func(c storagebackend.TransportConfig) (*kubernetes.Client, error) {
		kc, err := upstreamNewETCD3Client(c)
		if err == nil {
			dials = append(dials, kc)
		}
		return kc, err
	}}
	newClient := func() *kubernetes.Client {
		t.Helper()
		kc, err := shared.client(transport)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		return kc
	}
	a, b := newClient(), newClient()
	if len(dials) != 1 {
		t.Fatalf("%d connections dialled for two clients, want 1", len(dials))
	}
	base := dials[0]
	counted := &countingKV{KV: a.KV}
	a.KV = counted // as the apiserver does to each client it gets
	if b.KV == a.KV || base.KV == a.KV {
		t.Fatal("one client's KV replaced another's")
	}

	watchA := a.Watch(ctx, "/registry/", clientv3.WithPrefix())
	watchB := b.Watch(ctx, "/registry/", clientv3.WithPrefix())
	if _, err := b.Kubernetes.OptimisticPut(ctx, "/registry/x", []byte("1"), 0, kubernetes.PutOptions{}); err != nil {
		t.Fatalf("put through b: %v", err)
	}
	for name, w := range map[string]clientv3.WatchChan{"a": watchA, "b": watchB} {
		if ev := next(t, w); ev != "/registry/x" {
			t.Fatalf("watch of %s: got %q, want /registry/x", name, ev)
		}
	}
	if got, err := a.Kubernetes.Get(ctx, "/registry/x", kubernetes.GetOptions{}); err != nil || got.KV == nil || string(got.KV.Value) != "1" {
		t.Fatalf("get through a: %+v, %v", got, err)
	}
	if counted.calls.Load() != 1 {
		t.Fatalf("a's KV wrapper saw %d calls, want 1 (b's calls must not pass through it)", counted.calls.Load())
	}
	if _, err := a.Lease.Grant(ctx, 60); err != nil {
		t.Fatalf("lease grant through a: %v", err)
	}

	// A CRD's storage goes: its client closes; the other's watch and
	// requests go on over the connection.
	_ = a.Close()
	if _, open := <-watchA; open {
		for range watchA {
		}
	}
	if _, err := b.Kubernetes.OptimisticPut(ctx, "/registry/y", []byte("2"), 0, kubernetes.PutOptions{}); err != nil {
		t.Fatalf("put through b after a closed: %v", err)
	}
	if ev := next(t, watchB); ev != "/registry/y" {
		t.Fatalf("b's watch after a closed: got %q, want /registry/y", ev)
	}
	if _, err := b.Lease.Grant(ctx, 60); err != nil {
		t.Fatalf("lease grant through b after a closed: %v", err)
	}
	if base.Ctx().Err() != nil {
		t.Fatal("the shared connection closed while b still uses it")
	}

	_ = b.Close()
	select {
	case <-base.Ctx().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the shared connection is still open after its last client closed")
	}
	c := newClient()
	defer func() { _ = c.Close() }()
	if len(dials) != 2 {
		t.Fatalf("%d connections dialled, want a second one for a client after the first connection closed", len(dials))
	}
	if _, err := c.Kubernetes.Get(ctx, "/registry/y", kubernetes.GetOptions{}); err != nil {
		t.Fatalf("get through a client on the new connection: %v", err)
	}
}

// next returns the key of the watch's next event.
func next(t *testing.T, w clientv3.WatchChan) string {
	t.Helper()
	select {
	case resp, ok := <-w:
		if !ok || resp.Err() != nil || len(resp.Events) == 0 {
			t.Fatalf("watch: closed %v, err %v, %d events", !ok, resp.Err(), len(resp.Events))
		}
		return string(resp.Events[0].Kv.Key)
	case <-time.After(30 * time.Second): // kine's first event waits for its 10 s poll
		t.Fatal("watch: no event within 30 s")
	}
	return ""
}

func TestShareETCDClientsEnv(t *testing.T) {
	ptr := func() uintptr { return reflect.ValueOf(newETCD3Client).Pointer() }
	upstream := reflect.ValueOf(upstreamNewETCD3Client).Pointer()
	for _, tc := range []struct {
		value     string
		err       string
		installed bool
	}{
		{value: "yes", err: `CLUSTER_SHARED_ETCD_CLIENT="yes": want off`},
		{value: "off"},
		{value: "on", installed: true}, // last: it changes the process
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv(EnvSharedETCDClient, tc.value)
			err := shareETCDClients()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if installed := ptr() != upstream; installed != tc.installed {
				t.Fatalf("sharing installed: %v, want %v", installed, tc.installed)
			}
		})
	}
}
