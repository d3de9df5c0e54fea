// Package backendtest is one test suite for every kine backend we ship
// (SQLite and bolt): the etcd semantics the apiserver relies on.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/k3s-io/kine/pkg/server"
)

// Opener opens and starts a backend whose files live in dir; the returned
// function stops it and releases the files.
type Opener func(t *testing.T, dir string) (server.Backend, func())

// Run runs the suite against the backend open returns.
func Run(t *testing.T, open Opener) {
	t.Run("CRUD and conflicts", func(t *testing.T) { testCRUD(t, open) })
	t.Run("list, count and reads at past revisions", func(t *testing.T) { testList(t, open) })
	t.Run("watch from an old revision", func(t *testing.T) { testWatch(t, open) })
	t.Run("concurrent writers", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("compaction", func(t *testing.T) { testCompact(t, open) })
	t.Run("lease expiry", func(t *testing.T) { testLease(t, open) })
	t.Run("lease of a key written before a restart", func(t *testing.T) { testLeaseAcrossRestart(t, open) })
	t.Run("list of the whole keyspace", func(t *testing.T) { testListAll(t, open) })
}

var ctx = context.Background()

// must fails the test on an error: must(t)(b.Create(…)).
func must(t *testing.T) func(int64, error) int64 {
	return func(v int64, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func testCRUD(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()

	rev := must(t)(b.Create(ctx, "/a", []byte("1"), 0))
	if _, err := b.Create(ctx, "/a", []byte("again"), 0); !errors.Is(err, server.ErrKeyExists) {
		t.Errorf("create of an existing key: %v, want ErrKeyExists", err)
	}
	_, kv, err := b.Get(ctx, "/a", 0, false)
	if err != nil || kv == nil || string(kv.Value) != "1" || kv.ModRevision != rev || kv.CreateRevision != rev {
		t.Fatalf("get /a: %v %+v", err, kv)
	}

	// Update guarded by the expected mod revision.
	_, cur, ok, err := b.Update(ctx, "/a", []byte("stale"), rev-1, 0)
	if err != nil || ok || cur == nil || string(cur.Value) != "1" {
		t.Errorf("update with a stale revision: ok=%v err=%v cur=%+v; want refused with the current value", ok, err, cur)
	}
	rev2, kv, ok, err := b.Update(ctx, "/a", []byte("2"), rev, 0)
	if err != nil || !ok || rev2 <= rev || kv.ModRevision != rev2 {
		t.Fatalf("update: %v %v %+v", ok, err, kv)
	}
	if _, kv, _ := b.Get(ctx, "/a", 0, false); kv == nil || string(kv.Value) != "2" || kv.CreateRevision != rev || kv.ModRevision != rev2 {
		t.Fatalf("get after update: %+v", kv)
	}
	if _, _, ok, _ := b.Update(ctx, "/missing", []byte("x"), 1, 0); ok {
		t.Error("update of a missing key succeeded")
	}

	// Delete guarded the same way (kine resolves an unconditional delete to
	// the current revision before it reaches the backend).
	if _, _, ok, err := b.Delete(ctx, "/a", rev); ok || err != nil {
		t.Errorf("delete with a stale revision: ok=%v err=%v", ok, err)
	}
	rev3, _, ok, err := b.Delete(ctx, "/a", rev2)
	if err != nil || !ok || rev3 <= rev2 {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, kv, _ := b.Get(ctx, "/a", 0, false); kv != nil {
		t.Errorf("deleted key still readable: %+v", kv)
	}
	// A deleted key can be created again, with a new create revision.
	rev4 := must(t)(b.Create(ctx, "/a", []byte("3"), 0))
	if _, kv, _ := b.Get(ctx, "/a", 0, false); kv == nil || kv.CreateRevision != rev4 {
		t.Errorf("recreated key: %+v", kv)
	}
	if cur := must(t)(b.CurrentRevision(ctx)); cur != rev4 {
		t.Errorf("current revision %d, want %d", cur, rev4)
	}
}

func testList(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	for i := 0; i < 10; i++ {
		must(t)(b.Create(ctx, fmt.Sprintf("/pods/p%d", i), []byte("v1"), 0))
	}
	must(t)(b.Create(ctx, "/services/s", []byte("x"), 0))
	mid := must(t)(b.CurrentRevision(ctx))
	_, kv, _ := b.Get(ctx, "/pods/p3", 0, false)
	must(t)(func() (int64, error) {
		r, _, _, err := b.Update(ctx, "/pods/p3", []byte("v2"), kv.ModRevision, 0)
		return r, err
	}())
	deleteKey(t, b, "/pods/p4")

	_, kvs, err := b.List(ctx, "/pods/", "/pods0", 0, 0, false)
	if err != nil || len(kvs) != 9 {
		t.Fatalf("list /pods/: %d items, %v", len(kvs), err)
	}
	for i := 1; i < len(kvs); i++ {
		if kvs[i-1].Key >= kvs[i].Key {
			t.Errorf("list not in key order: %s, %s", kvs[i-1].Key, kvs[i].Key)
		}
	}
	_, kvs, _ = b.List(ctx, "/pods/", "/pods0", 3, 0, true)
	if len(kvs) != 3 || kvs[0].Value != nil {
		t.Errorf("limit 3 keys only: %d items, value %q", len(kvs), kvs[0].Value)
	}
	// At a past revision: p3 had v1 and p4 existed.
	_, kvs, _ = b.List(ctx, "/pods/", "/pods0", 0, mid, false)
	if len(kvs) != 10 {
		t.Errorf("list at revision %d: %d items, want 10", mid, len(kvs))
	}
	if _, kv, _ := b.Get(ctx, "/pods/p3", mid, false); kv == nil || string(kv.Value) != "v1" {
		t.Errorf("get at a past revision: %+v", kv)
	}
	if _, n, err := b.Count(ctx, "/pods/", "/pods0", 0); err != nil || n != 9 {
		t.Errorf("count: %d %v", n, err)
	}
	cur := must(t)(b.CurrentRevision(ctx))
	if _, _, err := b.List(ctx, "/pods/", "/pods0", 0, cur+10, false); !errors.Is(err, server.ErrFutureRev) {
		t.Errorf("list at a future revision: %v", err)
	}
	// Streaming list returns the same.
	res := b.ListStream(ctx, "/pods/", "/pods0", 0, 0, false)
	n := 0
	for range res.KVc {
		n++
	}
	if err := <-res.Errorc; err != nil || n != 9 {
		t.Errorf("list stream: %d %v", n, err)
	}
}

// collect reads events until n arrived or the timeout passed.
func collect(t *testing.T, wr server.WatchResult, n int, timeout time.Duration) []*server.Event {
	t.Helper()
	var events []*server.Event
	deadline := time.After(timeout)
	for len(events) < n {
		select {
		case batch, ok := <-wr.Eventc:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(events), n)
			}
			events = append(events, batch.Events...)
		case <-deadline:
			t.Fatalf("got %d of %d events in %s", len(events), n, timeout)
		}
	}
	return events
}

func testWatch(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	first := must(t)(b.Create(ctx, "/w/0", []byte("0"), 0))
	for i := 1; i < 50; i++ {
		must(t)(b.Create(ctx, fmt.Sprintf("/w/%d", i), itob(i), 0))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wr := b.Watch(wctx, first)
	// Writes while the watch catches up, and after.
	go func() {
		for i := 50; i < 100; i++ {
			b.Create(ctx, fmt.Sprintf("/w/%d", i), itob(i), 0)
		}
	}()
	events := collect(t, wr, 100, 30*time.Second)
	last := int64(0)
	for i, e := range events[:100] {
		if e.KV.ModRevision <= last {
			t.Fatalf("event %d: revision %d after %d (duplicate or out of order)", i, e.KV.ModRevision, last)
		}
		last = e.KV.ModRevision
		if want := fmt.Sprintf("/w/%d", i); e.KV.Key != want || !e.Create {
			t.Fatalf("event %d: %s create=%v, want create of %s", i, e.KV.Key, e.Create, want)
		}
	}
	// An update and a delete carry the previous value.
	_, kv, _ := b.Get(ctx, "/w/7", 0, false)
	b.Update(ctx, "/w/7", []byte("new"), kv.ModRevision, 0)
	deleteKey(t, b, "/w/7")
	events = collect(t, wr, 2, 30*time.Second)
	if events[0].Create || events[0].Delete || string(events[0].KV.Value) != "new" || events[0].PrevKV == nil || string(events[0].PrevKV.Value) != "7" {
		t.Errorf("update event %+v prev %+v", events[0].KV, events[0].PrevKV)
	}
	if !events[1].Delete || events[1].KV.Key != "/w/7" {
		t.Errorf("delete event %+v", events[1])
	}
}

// deleteKey deletes key at its current revision, as kine's server does.
func deleteKey(t *testing.T, b server.Backend, key string) {
	t.Helper()
	_, kv, err := b.Get(ctx, key, 0, false)
	if err != nil || kv == nil {
		t.Fatalf("get %s before delete: %+v %v", key, kv, err)
	}
	if _, _, ok, err := b.Delete(ctx, key, kv.ModRevision); !ok || err != nil {
		t.Fatalf("delete %s: %v %v", key, ok, err)
	}
}

func itob(i int) []byte { return []byte(fmt.Sprint(i)) }

func testConcurrent(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	revs := make(chan int64, writers*each)
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rev, err := b.Create(ctx, fmt.Sprintf("/c/%d/%d", w, i), []byte("x"), 0)
				if err != nil {
					errs <- err
					return
				}
				revs <- rev
			}
		}(w)
	}
	wg.Wait()
	close(revs)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Fatalf("revision %d given to two writes", r)
		}
		seen[r] = true
	}
	if _, n, _ := b.Count(ctx, "/c/", "/c0", 0); n != writers*each {
		t.Errorf("count %d, want %d", n, writers*each)
	}
}

func testCompact(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	rev := must(t)(b.Create(ctx, "/k", []byte("0"), 0))
	for i := 1; i <= 20; i++ {
		_, _, ok, err := b.Update(ctx, "/k", []byte(fmt.Sprint(i)), rev, 0)
		if err != nil || !ok {
			t.Fatalf("update %d: %v %v", i, ok, err)
		}
		rev = must(t)(b.CurrentRevision(ctx))
	}
	gone := must(t)(b.Create(ctx, "/gone", []byte("x"), 0))
	deleteKey(t, b, "/gone")
	target := must(t)(b.CurrentRevision(ctx))
	must(t)(b.Create(ctx, "/after", []byte("x"), 0))

	if _, err := b.Compact(ctx, target); err != nil {
		t.Fatalf("compact to %d: %v", target, err)
	}
	if _, _, err := b.List(ctx, "/k", "", 0, rev-5, false); !errors.Is(err, server.ErrCompacted) {
		t.Errorf("read below the compacted revision: %v, want ErrCompacted", err)
	}
	if _, _, err := b.Get(ctx, "/gone", gone, false); !errors.Is(err, server.ErrCompacted) {
		t.Errorf("read of a compacted revision: %v, want ErrCompacted", err)
	}
	if _, kv, err := b.Get(ctx, "/k", 0, false); err != nil || kv == nil || string(kv.Value) != "20" {
		t.Errorf("latest value after compaction: %+v %v", kv, err)
	}
	if _, kv, err := b.Get(ctx, "/k", target, false); err != nil || kv == nil || string(kv.Value) != "20" {
		t.Errorf("value at the compact revision: %+v %v", kv, err)
	}
	if _, kv, _ := b.Get(ctx, "/gone", 0, false); kv != nil {
		t.Errorf("deleted key back after compaction: %+v", kv)
	}
	if _, err := b.Compact(ctx, target); !errors.Is(err, server.ErrCompacted) {
		t.Errorf("second compaction to the same revision: %v, want ErrCompacted", err)
	}
	wr := b.Watch(ctx, 2)
	if wr.CompactRevision == 0 {
		select {
		case err := <-wr.Errorc:
			if err == nil {
				t.Error("watch from a compacted revision: no compact revision and no error")
			}
		case <-time.After(5 * time.Second):
			t.Error("watch from a compacted revision: no compact revision and no error")
		}
	}
}

func testLease(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := must(t)(b.Create(ctx, "/lease/keep", []byte("x"), 0))
	wr := b.Watch(wctx, start+1)
	// kine's lease IDs are the TTL in seconds.
	must(t)(b.Create(ctx, "/lease/short", []byte("x"), 1))
	waitExpired(t, b, "/lease/short", "key with a 1 s lease still there after 20 s")
	events := collect(t, wr, 2, 20*time.Second)
	if !events[0].Create || !events[1].Delete || events[1].KV.Key != "/lease/short" {
		t.Errorf("events %v, want create then delete of /lease/short", events)
	}
	if _, kv, _ := b.Get(ctx, "/lease/keep", 0, false); kv == nil {
		t.Error("key without a lease expired")
	}
}

// testLeaseAcrossRestart: kine's lease expiry finds the leased keys that
// exist when it starts by listing the whole keyspace ("" to ""), then
// follows the writes after it. A key written before a restart (events:
// 1 h) must still expire.
func testLeaseAcrossRestart(t *testing.T, open Opener) {
	dir := t.TempDir()
	b, done := open(t, dir)
	must(t)(b.Create(ctx, "/lease/old", []byte("x"), 1))
	must(t)(b.Create(ctx, "/lease/none", []byte("x"), 0))
	done()

	b, done = open(t, dir)
	defer done()
	waitExpired(t, b, "/lease/old", "a key with a 1 s lease, written before the restart, still there 20 s after it")
	if _, kv, _ := b.Get(ctx, "/lease/none", 0, false); kv == nil {
		t.Error("key without a lease expired")
	}
}

// testListAll: an empty key and end is the whole keyspace (kine's form of
// etcd's "\x00".."\x00"; its lease expiry lists so at start).
func testListAll(t *testing.T, open Opener) {
	b, done := open(t, t.TempDir())
	defer done()
	for _, k := range []string{"/a", "/b/1", "/c"} {
		must(t)(b.Create(ctx, k, []byte("x"), 0))
	}
	for _, tc := range []struct{ key, end string }{{"", ""}} {
		_, kvs, err := b.List(ctx, tc.key, tc.end, 0, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range kvs {
			if kv.Key == "/a" || kv.Key == "/b/1" || kv.Key == "/c" {
				keys = append(keys, kv.Key)
			}
		}
		if fmt.Sprint(keys) != "[/a /b/1 /c]" {
			t.Errorf("List(%q, %q) = %v, want every key", tc.key, tc.end, keys)
		}
	}
}

// waitExpired waits up to 20 s for key to be gone, failing with msg.
func waitExpired(t *testing.T, b server.Backend, key, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, kv, err := b.Get(ctx, key, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if kv == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
