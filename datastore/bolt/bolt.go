// Package bolt is a kine backend on go.etcd.io/bbolt, registered as the
// "bolt" driver: `--datastore-endpoint bolt:///path/state.bolt`.
//
// Layout (one bbolt file):
//
//	log   rev(8, big endian)        → record (the event at that revision)
//	hist  key 0x00 rev(8)           → ∅      (every stored revision of a key)
//	cur   key                       → rev(8) (the key's latest revision)
//	meta  "rev", "compact"          → rev(8)
//
// Writes go through one committer goroutine: it takes every write waiting
// and commits them in one synced transaction (group commit without a timer,
// so a lone writer pays one fsync and no delay), and acknowledges each only
// after that sync, so an acknowledged write survives kill -9 and power loss.
// Watchers are woken after each commit and read the log after their last
// revision, so they see every event once and in order. A compactor removes
// superseded revisions older than a recent window, so the file stays bounded
// under churn (bbolt reuses the freed pages).
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/broadcaster"
	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/server"
	"github.com/k3s-io/kine/pkg/ttl"
	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"
)

// Scheme is the datastore endpoint scheme of this driver.
const Scheme = "bolt"

func init() {
	drivers.Register(Scheme, func(ctx context.Context, wg *sync.WaitGroup, cfg *drivers.Config) (bool, server.Backend, error) {
		b, err := Open(cfg.DataSourceName, Options{
			CompactInterval: cfg.CompactInterval,
			CompactRetain:   cfg.CompactMinRetain,
			CompactBatch:    cfg.CompactBatchSize,
		})
		if err != nil {
			return false, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			b.Close()
		}()
		return false, b, nil
	})
}

var (
	bucketLog  = []byte("log")
	bucketHist = []byte("hist")
	bucketCur  = []byte("cur")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
	keyCompact = []byte("compact")
)

// Options tune compaction.
type Options struct {
	// CompactInterval between automatic compactions (default 5 minutes;
	// negative disables them).
	CompactInterval time.Duration
	// CompactRetain is how many recent revisions are always kept (default 1000).
	CompactRetain int64
	// CompactBatch bounds the revisions one compaction transaction handles.
	CompactBatch int64
}

// Backend implements kine's server.Backend on one bbolt file.
type Backend struct {
	db   *bolt.DB
	opts Options

	notifyMu sync.Mutex
	notifyCh chan struct{}

	broadcaster broadcaster.Broadcaster
	ctx         context.Context
	closeOnce   sync.Once

	writes  chan *writeOp
	closing chan struct{}
	stopped chan struct{} // closed when the committer has returned
}

// writeOp is one write waiting for the committer. fn must reset its own
// results: after a failed group it runs again in a transaction of its own.
type writeOp struct {
	fn   func(tx *bolt.Tx) error
	done chan error
}

// maxGroup bounds the writes one transaction carries.
const maxGroup = 512

var _ server.Backend = (*Backend)(nil)

// Open opens (or creates) the database file at path.
func Open(path string, opts Options) (*Backend, error) {
	if path == "" {
		return nil, errors.New("bolt: endpoint has no file path (want bolt:///path/to/state.bolt)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      5 * time.Second, // another process holds the file
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("bolt: %s is in use by another process (is another cluster server using this datastore?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLog, bucketHist, bucketCur, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: %s: %w", path, err)
	}
	if opts.CompactInterval == 0 {
		opts.CompactInterval = 5 * time.Minute
	}
	if opts.CompactRetain <= 0 {
		opts.CompactRetain = 1000
	}
	if opts.CompactBatch <= 0 {
		opts.CompactBatch = 1000
	}
	b := &Backend{db: db, opts: opts, notifyCh: make(chan struct{}), writes: make(chan *writeOp, maxGroup),
		closing: make(chan struct{}), stopped: make(chan struct{})}
	go b.commitLoop()
	return b, nil
}

// Close commits what is queued, stops the committer and closes the file.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closing)
		<-b.stopped
		err = b.db.Close()
	})
	return err
}

// errClosed answers writes that arrive after Close.
var errClosed = errors.New("bolt: datastore closed")

func (b *Backend) commitLoop() {
	defer close(b.stopped)
	for {
		var first *writeOp
		select {
		case first = <-b.writes:
		case <-b.closing:
			for {
				select {
				case op := <-b.writes:
					op.done <- errClosed
				default:
					return
				}
			}
		}
		group := []*writeOp{first}
	drain:
		for len(group) < maxGroup {
			select {
			case op := <-b.writes:
				group = append(group, op)
			default:
				break drain
			}
		}
		err := b.db.Update(func(tx *bolt.Tx) error {
			for _, op := range group {
				if err := op.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(group) > 1 {
			// One write failed the group: give each its own transaction.
			for _, op := range group {
				op.done <- b.db.Update(op.fn)
			}
		} else {
			for _, op := range group {
				op.done <- err
			}
		}
		b.broadcast()
	}
}

// Start implements server.Backend: the health key (revisions 1 and 2, as
// kine's other backends), lease expiry, and the compactor.
func (b *Backend) Start(ctx context.Context) error {
	b.ctx = ctx
	if _, err := b.Create(ctx, server.HealthKey, []byte(server.HealthVal), 0); err != nil && !errors.Is(err, server.ErrKeyExists) {
		return err
	}
	if _, kv, err := b.Get(ctx, server.HealthKey, 0, false); err == nil && kv != nil && kv.ModRevision == 1 {
		if _, _, _, err := b.Update(ctx, server.HealthKey, []byte(server.HealthVal), 1, 0); err != nil {
			return err
		}
	}
	go ttl.Run(ctx, b)
	if b.opts.CompactInterval > 0 {
		go b.compactLoop(ctx)
	}
	return nil
}

// record is one revision of a key.
type record struct {
	key            string
	value          []byte
	createRevision int64
	prevRevision   int64
	version        int64
	lease          int64
	created        bool
	deleted        bool
}

const (
	flagCreated = 1 << iota
	flagDeleted
)

func (r *record) encode() []byte {
	buf := make([]byte, 0, 1+5*binary.MaxVarintLen64+len(r.key)+len(r.value))
	var flags byte
	if r.created {
		flags |= flagCreated
	}
	if r.deleted {
		flags |= flagDeleted
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(r.createRevision))
	buf = binary.AppendUvarint(buf, uint64(r.prevRevision))
	buf = binary.AppendUvarint(buf, uint64(r.version))
	buf = binary.AppendVarint(buf, r.lease)
	buf = binary.AppendUvarint(buf, uint64(len(r.key)))
	buf = append(buf, r.key...)
	return append(buf, r.value...)
}

func decode(data []byte) (*record, error) {
	if len(data) < 1 {
		return nil, errors.New("bolt: empty record")
	}
	r := &record{created: data[0]&flagCreated != 0, deleted: data[0]&flagDeleted != 0}
	data = data[1:]
	next := func() int64 {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			data = nil
			return -1
		}
		data = data[n:]
		return int64(v)
	}
	r.createRevision = next()
	r.prevRevision = next()
	r.version = next()
	lease, n := binary.Varint(data)
	if n <= 0 {
		return nil, errors.New("bolt: corrupt record")
	}
	data = data[n:]
	r.lease = lease
	klen := next()
	if klen < 0 || int64(len(data)) < klen {
		return nil, errors.New("bolt: corrupt record")
	}
	r.key = string(data[:klen])
	// Copy: bbolt's memory is valid only inside the transaction.
	r.value = append([]byte(nil), data[klen:]...)
	return r, nil
}

func (r *record) keyValue(rev int64, keysOnly bool) *server.KeyValue {
	kv := &server.KeyValue{Key: r.key, CreateRevision: r.createRevision, ModRevision: rev, Version: r.version, Lease: r.lease}
	if !keysOnly {
		kv.Value = r.value
	}
	return kv
}

func u64(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func i64(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

func histKey(key string, rev int64) []byte {
	k := make([]byte, 0, len(key)+9)
	k = append(k, key...)
	k = append(k, 0)
	return append(k, u64(rev)...)
}

func metaInt(tx *bolt.Tx, name []byte) int64 {
	if v := tx.Bucket(bucketMeta).Get(name); v != nil {
		return i64(v)
	}
	return 0
}

// current returns the latest record of key (a tombstone included).
func current(tx *bolt.Tx, key string) (int64, *record, error) {
	v := tx.Bucket(bucketCur).Get([]byte(key))
	if v == nil {
		return 0, nil, nil
	}
	rev := i64(v)
	data := tx.Bucket(bucketLog).Get(v)
	if data == nil {
		return 0, nil, fmt.Errorf("bolt: key %q points at missing revision %d", key, rev)
	}
	r, err := decode(data)
	return rev, r, err
}

// atRevision returns the record of key with the highest revision ≤ rev.
func atRevision(tx *bolt.Tx, key string, rev int64) (int64, *record, error) {
	c := tx.Bucket(bucketHist).Cursor()
	prefix := append([]byte(key), 0)
	k, _ := c.Seek(histKey(key, rev+1))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
		return 0, nil, nil
	}
	found := i64(k[len(prefix):])
	data := tx.Bucket(bucketLog).Get(k[len(prefix):])
	if data == nil {
		return 0, nil, fmt.Errorf("bolt: history of %q names missing revision %d", key, found)
	}
	r, err := decode(data)
	return found, r, err
}

// append writes r as the next revision and returns it.
func appendRecord(tx *bolt.Tx, r *record) (int64, error) {
	rev := metaInt(tx, keyRev) + 1
	rb := u64(rev)
	if err := tx.Bucket(bucketLog).Put(rb, r.encode()); err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketHist).Put(histKey(r.key, rev), nil); err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketCur).Put([]byte(r.key), rb); err != nil {
		return 0, err
	}
	return rev, tx.Bucket(bucketMeta).Put(keyRev, rb)
}

func validKey(key string) error {
	if key == "" || bytes.IndexByte([]byte(key), 0) >= 0 {
		return fmt.Errorf("bolt: invalid key %q (empty or contains NUL)", key)
	}
	return nil
}

// write runs fn in the next group-committed, synced transaction.
func (b *Backend) write(fn func(tx *bolt.Tx) error) error {
	op := &writeOp{fn: fn, done: make(chan error, 1)}
	select {
	case b.writes <- op:
	case <-b.closing:
		return errClosed
	}
	select {
	case err := <-op.done:
		return err
	case <-b.stopped:
		select { // answered just before the committer stopped?
		case err := <-op.done:
			return err
		default:
			return errClosed
		}
	}
}

// CurrentRevision implements server.Backend.
func (b *Backend) CurrentRevision(ctx context.Context) (int64, error) {
	var rev int64
	err := b.db.View(func(tx *bolt.Tx) error {
		rev = metaInt(tx, keyRev)
		return nil
	})
	return rev, err
}

// DbSize implements server.Backend: the size of the file's used data.
func (b *Backend) DbSize(ctx context.Context) (int64, error) {
	var size int64
	err := b.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size, err
}

// Create implements server.Backend.
func (b *Backend) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	var rev int64
	var exists bool
	err := b.write(func(tx *bolt.Tx) error {
		exists = false
		prevRev, prev, err := current(tx, key)
		if err != nil {
			return err
		}
		if prev != nil && !prev.deleted {
			exists, rev = true, metaInt(tx, keyRev)
			return nil
		}
		rev, err = appendRecord(tx, &record{key: key, value: value, version: 1, prevRevision: prevRev, lease: lease, created: true, createRevision: metaInt(tx, keyRev) + 1})
		return err
	})
	if err != nil {
		return 0, err
	}
	if exists {
		return rev, server.ErrKeyExists
	}
	return rev, nil
}

// Update implements server.Backend: it succeeds only if the key's latest
// revision is revision.
func (b *Backend) Update(ctx context.Context, key string, value []byte, revision, lease int64) (int64, *server.KeyValue, bool, error) {
	rev, prevKV, written, err := b.replace(key, revision, false, func(prevRev int64, prev *record) *record {
		return &record{key: key, value: value, createRevision: prev.createRevision, prevRevision: prevRev, version: prev.version + 1, lease: lease}
	})
	if written == nil || err != nil {
		return rev, prevKV, false, err
	}
	return rev, written.keyValue(rev, false), true, nil
}

// Delete implements server.Backend; revision 0 deletes unconditionally.
func (b *Backend) Delete(ctx context.Context, key string, revision int64) (int64, *server.KeyValue, bool, error) {
	rev, prevKV, written, err := b.replace(key, revision, revision == 0, func(prevRev int64, prev *record) *record {
		return &record{key: key, value: prev.value, createRevision: prev.createRevision, prevRevision: prevRev, version: prev.version, lease: prev.lease, deleted: true}
	})
	return rev, prevKV, written != nil && err == nil, err
}

// replace appends next(latest) as key's new revision if the key exists and
// its latest revision is revision (or anyRevision). It returns the revision, the previous value (nil if the key does not
// exist) and the record written (nil if the guard refused).
func (b *Backend) replace(key string, revision int64, anyRevision bool, next func(prevRev int64, prev *record) *record) (int64, *server.KeyValue, *record, error) {
	var rev int64
	var prevKV *server.KeyValue
	var written *record
	err := b.write(func(tx *bolt.Tx) error {
		prevKV, written = nil, nil
		prevRev, prev, err := current(tx, key)
		if err != nil {
			return err
		}
		rev = metaInt(tx, keyRev)
		if prev == nil || prev.deleted {
			return nil
		}
		prevKV = prev.keyValue(prevRev, false)
		if !anyRevision && prevRev != revision {
			return nil
		}
		r := next(prevRev, prev)
		if rev, err = appendRecord(tx, r); err != nil {
			return err
		}
		written = r
		return nil
	})
	return rev, prevKV, written, err
}

// Get implements server.Backend.
func (b *Backend) Get(ctx context.Context, key string, revision int64, keysOnly bool) (int64, *server.KeyValue, error) {
	rev, kvs, err := b.List(ctx, key, "", 1, revision, keysOnly)
	if err != nil || len(kvs) == 0 {
		return rev, nil, err
	}
	return rev, kvs[0], nil
}

// checkRevision returns the current revision, or an error for a revision in
// the future or compacted away.
func checkRevision(tx *bolt.Tx, revision int64) (int64, error) {
	rev := metaInt(tx, keyRev)
	if revision > 0 {
		if revision > rev {
			return rev, server.ErrFutureRev
		}
		if revision < metaInt(tx, keyCompact) {
			return rev, server.ErrCompacted
		}
	}
	return rev, nil
}

// scan calls fn for each live key in [key, end) (or key alone when end is
// empty; every key when both are: kine's form of etcd's whole keyspace,
// which its lease expiry lists at start) as of revision (0: now), in key
// order, until fn returns false.
func scan(tx *bolt.Tx, key, end string, revision int64, keysOnly bool, fn func(*server.KeyValue) bool) error {
	all := key == "" && end == ""
	c := tx.Bucket(bucketCur).Cursor()
	for k, v := c.Seek([]byte(key)); k != nil; k, v = c.Next() {
		switch {
		case all:
		case end == "":
			if string(k) != key {
				return nil
			}
		case string(k) >= end:
			return nil
		}
		var rev int64
		var r *record
		var err error
		if revision > 0 && i64(v) > revision {
			rev, r, err = atRevision(tx, string(k), revision)
		} else {
			rev = i64(v)
			var data []byte
			if data = tx.Bucket(bucketLog).Get(v); data == nil {
				return fmt.Errorf("bolt: key %q points at missing revision %d", k, rev)
			}
			r, err = decode(data)
		}
		if err != nil {
			return err
		}
		if r == nil || r.deleted {
			continue
		}
		if !fn(r.keyValue(rev, keysOnly)) {
			return nil
		}
	}
	return nil
}

// List implements server.Backend.
func (b *Backend) List(ctx context.Context, key, end string, limit, revision int64, keysOnly bool) (int64, []*server.KeyValue, error) {
	var rev int64
	var kvs []*server.KeyValue
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		if rev, err = checkRevision(tx, revision); err != nil {
			return err
		}
		return scan(tx, key, end, revision, keysOnly, func(kv *server.KeyValue) bool {
			kvs = append(kvs, kv)
			return limit <= 0 || int64(len(kvs)) < limit
		})
	})
	return rev, kvs, err
}

// ListStream implements server.Backend. The snapshot is one read
// transaction; rows are collected first so the transaction stays short.
func (b *Backend) ListStream(ctx context.Context, key, end string, limit, revision int64, keysOnly bool) server.ListResult {
	kvc := make(chan *server.KeyValue, 100)
	errc := make(chan error, 1)
	rev, kvs, err := b.List(ctx, key, end, limit, revision, keysOnly)
	go func() {
		defer close(kvc)
		defer close(errc)
		if err != nil {
			errc <- err
			return
		}
		for _, kv := range kvs {
			select {
			case kvc <- kv:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	return server.ListResult{CurrentRevision: rev, KVc: kvc, Errorc: errc}
}

// Count implements server.Backend.
func (b *Backend) Count(ctx context.Context, key, end string, revision int64) (int64, int64, error) {
	var rev, n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		if rev, err = checkRevision(tx, revision); err != nil {
			return err
		}
		return scan(tx, key, end, revision, true, func(*server.KeyValue) bool { n++; return true })
	})
	return rev, n, err
}

func (b *Backend) broadcast() {
	b.notifyMu.Lock()
	close(b.notifyCh)
	b.notifyCh = make(chan struct{})
	b.notifyMu.Unlock()
}

func (b *Backend) notified() <-chan struct{} {
	b.notifyMu.Lock()
	defer b.notifyMu.Unlock()
	return b.notifyCh
}

// after returns the events after revision, at most limit (0: all).
func (b *Backend) after(revision, limit int64) (server.EventBatch, error) {
	var batch server.EventBatch
	err := b.db.View(func(tx *bolt.Tx) error {
		batch.CurrentRev = metaInt(tx, keyRev)
		compact := metaInt(tx, keyCompact)
		if revision > batch.CurrentRev {
			return nil
		}
		if revision < compact-1 {
			return server.ErrCompacted
		}
		log := tx.Bucket(bucketLog)
		c := log.Cursor()
		for k, v := c.Seek(u64(revision + 1)); k != nil; k, v = c.Next() {
			r, err := decode(v)
			if err != nil {
				return err
			}
			rev := i64(k)
			ev := &server.Event{Create: r.created, Delete: r.deleted, KV: r.keyValue(rev, false)}
			if r.prevRevision > 0 && r.prevRevision >= compact {
				if pv := log.Get(u64(r.prevRevision)); pv != nil {
					if p, err := decode(pv); err == nil {
						ev.PrevKV = p.keyValue(r.prevRevision, false)
					}
				}
			}
			batch.Events = append(batch.Events, ev)
			batch.CurrentRev = rev
			if limit > 0 && int64(len(batch.Events)) >= limit {
				break
			}
		}
		return nil
	})
	return batch, err
}

// Watch implements server.Backend: events after revision-1, then every
// later one, once and in revision order.
func (b *Backend) Watch(ctx context.Context, revision int64) server.WatchResult {
	ctx, cancel := context.WithCancel(ctx)
	readc := b.broadcaster.Watch(ctx, b.startWatch)
	result := make(chan server.EventBatch, 100)
	errc := make(chan error, 1)
	wr := server.WatchResult{Eventc: result, Errorc: errc}
	if readc == nil {
		errc <- server.ErrGRPCUnhealthy
		cancel()
		close(result)
		return wr
	}
	if revision > 1 {
		revision-- // the watch includes the requested revision
	}
	var batch server.EventBatch
	var err error
	if revision == 0 {
		wr.CurrentRevision, err = b.CurrentRevision(ctx)
		batch.CurrentRev = wr.CurrentRevision
	} else {
		batch, err = b.after(revision, 0)
		wr.CurrentRevision = batch.CurrentRev
	}
	if err != nil {
		if errors.Is(err, server.ErrCompacted) {
			_ = b.db.View(func(tx *bolt.Tx) error {
				wr.CompactRevision = metaInt(tx, keyCompact)
				return nil
			})
		} else if !errors.Is(err, context.Canceled) {
			errc <- server.ErrGRPCUnhealthy
		}
		cancel()
	}
	result <- batch
	rev := wr.CurrentRevision
	go func() {
		defer cancel()
		defer close(result)
		for batch := range readc {
			select {
			case result <- batch.After(rev):
			case <-ctx.Done():
				return
			}
		}
	}()
	return wr
}

// startWatch is the single reader behind every watcher: it follows the log
// from the revision current at its start.
func (b *Backend) startWatch() (chan server.EventBatch, error) {
	start, err := b.CurrentRevision(b.ctx)
	if err != nil {
		return nil, err
	}
	events := make(chan server.EventBatch)
	go func() {
		defer close(events)
		last := start
		for {
			wake := b.notified()
			batch, err := b.after(last, 1000)
			if err != nil {
				logrus.Errorf("bolt: watch: %v", err)
			} else if len(batch.Events) > 0 {
				last = batch.CurrentRev
				select {
				case events <- batch:
				case <-b.ctx.Done():
					return
				}
				continue // there may be more
			}
			select {
			case <-wake:
			case <-time.After(time.Second):
			case <-b.ctx.Done():
				return
			}
		}
	}()
	return events, nil
}

// Compact implements server.Backend: revisions below revision are dropped
// where a later revision of the same key (at or below revision) supersedes
// them, and tombstones at the boundary with their history.
func (b *Backend) Compact(ctx context.Context, revision int64) (int64, error) {
	var current, compact int64
	err := b.db.View(func(tx *bolt.Tx) error {
		current, compact = metaInt(tx, keyRev), metaInt(tx, keyCompact)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if revision > current {
		return current, server.ErrFutureRev
	}
	if revision <= compact {
		return current, server.ErrCompacted
	}
	for from := compact; from < revision; {
		to := min(from+b.opts.CompactBatch, revision)
		if err := b.db.Update(func(tx *bolt.Tx) error { return compactRange(tx, from, to, revision) }); err != nil {
			return current, fmt.Errorf("bolt: compact: %w", err)
		}
		from = to
	}
	return current, nil
}

// compactRange handles revisions (from, to] for a compaction to target.
func compactRange(tx *bolt.Tx, from, to, target int64) error {
	log, hist, cur := tx.Bucket(bucketLog), tx.Bucket(bucketHist), tx.Bucket(bucketCur)
	var drop [][]byte
	c := log.Cursor()
	for k, v := c.Seek(u64(from + 1)); k != nil && i64(k) <= to; k, v = c.Next() {
		r, err := decode(v)
		if err != nil {
			return err
		}
		rev := i64(k)
		prefix := append([]byte(r.key), 0)
		hc := hist.Cursor()
		// The value an earlier compaction kept for this key is superseded
		// now (rev ≤ target): drop it.
		if hk, _ := hc.Seek(histKey(r.key, rev)); hk != nil {
			if pk, _ := hc.Prev(); pk != nil && bytes.HasPrefix(pk, prefix) && len(pk) == len(prefix)+8 && i64(pk[len(prefix):]) <= from {
				old := append([]byte(nil), pk[len(prefix):]...)
				drop = append(drop, old)
				if err := hist.Delete(append([]byte(nil), pk...)); err != nil {
					return err
				}
			}
		}
		// Is there a later revision of this key at or below the target?
		hk, _ := hc.Seek(histKey(r.key, rev+1))
		superseded := hk != nil && bytes.HasPrefix(hk, prefix) && len(hk) == len(prefix)+8 && i64(hk[len(prefix):]) <= target
		if !superseded && !r.deleted {
			continue // the key's value as of the target: keep
		}
		drop = append(drop, append([]byte(nil), k...))
		if err := hist.Delete(histKey(r.key, rev)); err != nil {
			return err
		}
		if !superseded { // a tombstone that is the key's latest
			if v := cur.Get([]byte(r.key)); v != nil && i64(v) == rev {
				if err := cur.Delete([]byte(r.key)); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range drop {
		if err := log.Delete(k); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyCompact, u64(to))
}

// compactLoop keeps the newest CompactRetain revisions and compacts the rest.
func (b *Backend) compactLoop(ctx context.Context) {
	t := time.NewTicker(b.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		current, err := b.CurrentRevision(ctx)
		if err != nil {
			continue
		}
		target := current - b.opts.CompactRetain
		if target <= 0 {
			continue
		}
		if _, err := b.Compact(ctx, target); err != nil && !errors.Is(err, server.ErrCompacted) {
			logrus.Warnf("bolt: compact to %d: %v", target, err)
		}
	}
}
