package datastore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The default SQLite datastore polls only every exclusivePollInterval: a
// watch must still see a write through kine at once (its own writes wake
// the poll loop), or every controller would lag by the poll interval.
// Only the first wake-up after kine's poll loop starts is spent preparing
// its query, so that write waits for the next tick (a server's start
// writes hundreds of rows at once, so it does not wait there).
func TestDefaultSQLiteWatchSeesWritesAtOnce(t *testing.T) {
	const within = 2 * time.Second
	dir := t.TempDir()
	k := &Kine{DBDir: filepath.Join(dir, "db"), SocketPath: filepath.Join(dir, "kine.sock")}
	if k.pollInterval() <= 2*within {
		t.Fatalf("poll interval %s: this test cannot tell a woken poll from a timed one", k.pollInterval())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if err := k.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: k.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	watch := client.Watch(ctx, "/registry/test/", clientv3.WithPrefix())
	// Let kine's poll tick pass once, so the write below falls between ticks.
	time.Sleep(500 * time.Millisecond)
	for i, key := range []string{"/registry/test/first", "/registry/test/a", "/registry/test/b"} {
		begin := time.Now()
		wait := within
		if i == 0 {
			wait = k.pollInterval() + within
		}
		if _, err := client.Put(ctx, key, "v"); err != nil {
			t.Fatal(err)
		}
		select {
		case resp := <-watch:
			if err := resp.Err(); err != nil {
				t.Fatal(err)
			}
			if len(resp.Events) != 1 || string(resp.Events[0].Kv.Key) != key {
				t.Fatalf("write %d: events %v, want one for %s", i, resp.Events, key)
			}
			t.Logf("%s seen after %s", key, time.Since(begin).Round(time.Millisecond))
		case <-time.After(wait):
			t.Fatalf("write %d (%s) not seen by a watch within %s (poll interval %s)", i, key, wait, k.pollInterval())
		}
	}
}

func TestSQLiteDir(t *testing.T) {
	for _, tc := range []struct{ endpoint, want string }{
		{"sqlite:///var/lib/cluster/db/state.db", "/var/lib/cluster/db"},
		{"sqlite:///srv/x.db?_journal=WAL", "/srv"},
		{"sqlite://rel/state.db", "rel"},
		{"sqlite://", ""},
		{"postgres://u:p@h/db", ""},
		{"bolt:///var/lib/x.bolt", ""},
	} {
		if got := sqliteDir(tc.endpoint); got != tc.want {
			t.Errorf("sqliteDir(%q) = %q, want %q", tc.endpoint, got, tc.want)
		}
	}
}
