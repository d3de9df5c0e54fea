package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k3s-io/kine/pkg/server"
	bolt "go.etcd.io/bbolt"
)

func TestRecordRoundTrip(t *testing.T) {
	in := &record{key: "/registry/pods/default/p", value: []byte("v"), createRevision: 7, prevRevision: 9, version: 3, lease: 60, deleted: true}
	out, err := decode(in.encode())
	if err != nil {
		t.Fatal(err)
	}
	if out.key != in.key || string(out.value) != "v" || out.createRevision != 7 || out.prevRevision != 9 || out.version != 3 || out.lease != 60 || !out.deleted || out.created {
		t.Errorf("round trip: %+v", out)
	}
	if _, err := decode([]byte{0, 1}); err == nil {
		t.Error("truncated record decoded")
	}
}

// Automatic compaction keeps the newest revisions and bounds the log.
func TestAutomaticCompaction(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "state.bolt"), Options{CompactInterval: 50 * time.Millisecond, CompactRetain: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := b.Create(ctx, "/k", []byte("0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if rev, _, _, err = b.Update(ctx, "/k", []byte("x"), rev, 0); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := b.List(ctx, "/k", "", 0, 5, false)
		if errors.Is(err, server.ErrCompacted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic compaction within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once writes stop, the next rounds leave the retained window only.
	for {
		var entries int
		b.db.View(func(tx *bolt.Tx) error {
			entries = tx.Bucket(bucketLog).Stats().KeyN
			return nil
		})
		// 10 retained, the value of /k at the compact revision, the health key.
		if entries <= 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log entries 10s after the writes, want 12", entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, kv, err := b.Get(ctx, "/k", 0, false); err != nil || kv == nil || kv.ModRevision != rev {
		t.Errorf("latest value lost: %+v %v", kv, err)
	}
}

func TestOpenRefusesEmptyPath(t *testing.T) {
	if _, err := Open("", Options{}); err == nil {
		t.Error("empty path accepted")
	}
}

func TestOpenRefusesAFileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bolt")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A second open (another server on the same file) waits for the lock,
	// then says who holds it.
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second open: %v", err)
	}
}
