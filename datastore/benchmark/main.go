// Command benchmark runs the same workload against kine's SQLite backend and
// our bolt backend, through the backend interface directly, and prints a
// table: create, update, get, list and watch rates with p50/p99 latency at
// 1, 8 and 32 concurrent clients, the bolt/sqlite ratios, and the file size
// after many updates to a fixed key set with compaction on.
//
//	go run ./datastore/benchmark [-duration 2s] [-updates 100000] [-keys 1000]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"
	"github.com/sirupsen/logrus"

	"github.com/cluster-io/cluster/datastore/backendtest"
	_ "github.com/cluster-io/cluster/datastore/bolt"
)

var (
	duration = flag.Duration("duration", 2*time.Second, "how long each cell runs")
	updates  = flag.Int("updates", 100000, "updates for the file-size test")
	keys     = flag.Int("keys", 1000, "distinct keys for the file-size test")
	apiKube  = flag.String("api-kubeconfig", "", "instead: run the workload through the apiserver of this kubeconfig")
	apiLabel = flag.String("api-label", "", "datastore name to print with -api-kubeconfig")
	value    = []byte(strings.Repeat("v", 512)) // a small Kubernetes object
)

type backendKind struct {
	name     string
	endpoint func(dir string) string
	files    func(dir string) []string
}

var kinds = []backendKind{
	{"sqlite", func(d string) string { return "sqlite://" + filepath.Join(d, "state.db") + "?" + sqlite.DefaultParams },
		func(d string) []string {
			return []string{filepath.Join(d, "state.db"), filepath.Join(d, "state.db-wal"), filepath.Join(d, "state.db-shm")}
		}},
	// kine's default SQLite syncs only at WAL checkpoints (synchronous=NORMAL):
	// a power cut can lose acknowledged writes. FULL syncs every commit, as
	// bolt does: the like-for-like comparison.
	{"sqlite-full", func(d string) string {
		return "sqlite://" + filepath.Join(d, "state.db") + "?" + strings.Replace(sqlite.DefaultParams, "_synchronous=NORMAL", "_synchronous=FULL", 1)
	}, func(d string) []string {
		return []string{filepath.Join(d, "state.db"), filepath.Join(d, "state.db-wal"), filepath.Join(d, "state.db-shm")}
	}},
	{"bolt", func(d string) string { return "bolt://" + filepath.Join(d, "state.bolt") },
		func(d string) []string { return []string{filepath.Join(d, "state.bolt")} }},
}

func open(endpoint string, compactEvery time.Duration) (server.Backend, func()) {
	b, done, err := backendtest.Open(endpoint, compactEvery, 1000, time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, endpoint, err)
		os.Exit(1)
	}
	return b, done
}

type result struct {
	ops      int64
	seconds  float64
	p50, p99 time.Duration
}

func (r result) rate() float64 { return float64(r.ops) / r.seconds }

// run calls op from n clients for the duration and measures each call.
func run(n int, op func(client int, i int) error) result {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	var failed atomic.Int64
	deadline := time.Now().Add(*duration)
	begin := time.Now()
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := op(c, i); err != nil {
					failed.Add(1)
					continue
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		}(c)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "  (%d failed operations)\n", f)
	}
	return summarize(all, time.Since(begin))
}

func summarize(all []time.Duration, took time.Duration) result {
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{ops: int64(len(all)), seconds: took.Seconds()}
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
	}
	return r
}

// cells measures every operation at one concurrency against one backend.
func cells(b server.Backend, n int, tag string) map[string]result {
	ctx := context.Background()
	out := map[string]result{}
	revs := make([]map[int]int64, n)
	for c := range revs {
		revs[c] = map[int]int64{}
	}
	out["create"] = run(n, func(c, i int) error {
		rev, err := b.Create(ctx, fmt.Sprintf("/registry/%s/%d/%d", tag, c, i), value, 0)
		revs[c][i] = rev
		return err
	})
	// Each client updates the keys it created, round robin.
	counts := make([]int, n)
	for c := range counts {
		counts[c] = len(revs[c])
	}
	out["update"] = run(n, func(c, i int) error {
		k := i % counts[c]
		rev, _, ok, err := b.Update(ctx, fmt.Sprintf("/registry/%s/%d/%d", tag, c, k), value, revs[c][k], 0)
		if err == nil && !ok {
			return fmt.Errorf("update conflict")
		}
		revs[c][k] = rev
		return err
	})
	out["get"] = run(n, func(c, i int) error {
		_, kv, err := b.Get(ctx, fmt.Sprintf("/registry/%s/%d/%d", tag, c, i%counts[c]), 0, false)
		if err == nil && kv == nil {
			return fmt.Errorf("missing")
		}
		return err
	})
	out["list"] = run(n, func(c, i int) error {
		prefix := fmt.Sprintf("/registry/%s/%d/", tag, c)
		_, _, err := b.List(ctx, prefix, prefix[:len(prefix)-1]+"0", 100, 0, false)
		return err
	})
	out["watch"] = watchCell(b, n, tag)
	return out
}

// watchCell: n watchers follow one writer. The rate is events delivered per
// second over all watchers (bounded by the writer's rate); the latency runs
// from the start of the write to the event's arrival (each value carries its
// write's start time).
func watchCell(b server.Backend, n int, tag string) result {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start, _ := b.CurrentRevision(ctx)
	prefix := fmt.Sprintf("/registry/watch-%s/", tag)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < n; w++ {
		wr := b.Watch(ctx, start+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case batch, ok := <-wr.Eventc:
					if !ok {
						return
					}
					now := time.Now()
					mu.Lock()
					for _, e := range batch.Events {
						if strings.HasPrefix(e.KV.Key, prefix) && len(e.KV.Value) >= 8 {
							sent := int64(binary.BigEndian.Uint64(e.KV.Value))
							lat = append(lat, now.Sub(time.Unix(0, sent)))
						}
					}
					mu.Unlock()
				case <-stop:
					return
				}
			}
		}()
	}
	begin := time.Now()
	deadline := begin.Add(*duration)
	v := append([]byte(nil), value...)
	for i := 0; time.Now().Before(deadline); i++ {
		binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
		b.Create(ctx, fmt.Sprintf("%s%d", prefix, i), v, 0)
	}
	time.Sleep(1500 * time.Millisecond) // let polling backends deliver
	close(stop)
	wg.Wait()
	return summarize(lat, time.Since(begin))
}

// fileSize applies updates to a fixed key set with compaction on, in two
// halves, and returns the bytes on disk after each: equal sizes mean the
// file is bounded under churn.
func fileSize(k backendKind) (half, full int64, took time.Duration) {
	dir, _ := os.MkdirTemp("", "bench-size-"+k.name)
	defer os.RemoveAll(dir)
	b, done := open(k.endpoint(dir), 2*time.Second)
	ctx := context.Background()
	revs := make([]int64, *keys)
	for i := range revs {
		revs[i], _ = b.Create(ctx, fmt.Sprintf("/registry/size/%d", i), value, 0)
	}
	diskSize := func() int64 {
		var size int64
		for _, f := range k.files(dir) {
			if st, err := os.Stat(f); err == nil {
				size += st.Size()
			}
		}
		return size
	}
	begin := time.Now()
	const clients = 16
	per := *updates / clients / 2
	for round := 0; round < 2; round++ {
		updateAll(b, clients, per, revs)
		took += time.Since(begin)
		time.Sleep(5 * time.Second) // two compaction rounds
		if round == 0 {
			half = diskSize()
		}
		begin = time.Now()
	}
	done()
	return half, diskSize(), took
}

// updateAll makes per updates from each of clients writers; client c owns
// the keys ≡ c (mod clients), so there are no conflicts.
func updateAll(b server.Backend, clients, per int, revs []int64) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				k := c + clients*(i%(len(revs)/clients))
				rev, _, _, err := b.Update(ctx, fmt.Sprintf("/registry/size/%d", k), value, revs[k], 0)
				if err == nil {
					revs[k] = rev
				}
			}
		}(c)
	}
	wg.Wait()
}

func main() {
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	if *apiKube != "" {
		res := apiCells(*apiKube, []int{1, 8, 32})
		for _, op := range []string{"create", "update", "get", "list"} {
			for _, n := range []int{1, 8, 32} {
				r := res[op][n]
				fmt.Printf("api %-7s %3d  %-11s %10.0f %9s %9s\n", op, n, *apiLabel, r.rate(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
			}
		}
		return
	}
	results := map[string]map[int]map[string]result{}
	concurrency := []int{1, 8, 32}
	for _, k := range kinds {
		results[k.name] = map[int]map[string]result{}
		for _, n := range concurrency {
			dir, _ := os.MkdirTemp("", "bench-"+k.name)
			b, done := open(k.endpoint(dir), -1)
			fmt.Fprintf(os.Stderr, "%s, %d clients…\n", k.name, n)
			results[k.name][n] = cells(b, n, fmt.Sprintf("c%d", n))
			done()
			os.RemoveAll(dir)
		}
	}
	fmt.Printf("kine backends, direct (value %d B, %s per cell; SQLite is modernc, pure Go)\n\n", len(value), *duration)
	fmt.Printf("%-7s %3s  %-11s %10s %9s %9s\n", "op", "cl", "backend", "ops/s", "p50", "p99")
	for _, op := range []string{"create", "update", "get", "list", "watch"} {
		for _, n := range concurrency {
			for _, k := range kinds {
				r := results[k.name][n][op]
				fmt.Printf("%-7s %3d  %-11s %10.0f %9s %9s\n", op, n, k.name, r.rate(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
			}
			s, sf, bo := results["sqlite"][n][op], results["sqlite-full"][n][op], results["bolt"][n][op]
			if s.rate() > 0 && sf.rate() > 0 {
				fmt.Printf("%-7s %3d  bolt/sqlite rate ×%.1f, bolt/sqlite-full ×%.1f\n", op, n, bo.rate()/s.rate(), bo.rate()/sf.rate())
			}
		}
	}
	fmt.Printf("\nfile size after %d and %d updates to %d keys (compaction every 2 s, 1000 revisions kept):\n", *updates/2, *updates, *keys)
	sizes := map[string]int64{}
	for _, k := range kinds {
		half, size, took := fileSize(k)
		sizes[k.name] = size
		fmt.Printf("  %-11s %7.1f MB → %7.1f MB  (updates at %.0f/s with 16 clients)\n", k.name, float64(half)/(1<<20), float64(size)/(1<<20), float64(*updates)/took.Seconds())
	}
	if sizes["sqlite"] > 0 {
		fmt.Printf("  bolt/sqlite size ×%.2f\n", float64(sizes["bolt"])/float64(sizes["sqlite"]))
	}
}
