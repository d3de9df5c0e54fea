package datastore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"

	"github.com/cluster-io/cluster/datastore/backendtest"
)

// backends are the kine backends under one suite: endpoint builds the DSN
// for a file in dir.
var backends = map[string]func(dir string) string{
	// A user's sqlite:// endpoint gets kine's parameters; our default file
	// adds the unix-excl VFS (DefaultSQLiteDSN).
	"sqlite": func(dir string) string {
		return "sqlite://" + filepath.Join(dir, "state.db") + "?" + sqlite.DefaultParams
	},
	"sqlite default": DefaultSQLiteDSN,
	"bolt":           func(dir string) string { return "bolt://" + filepath.Join(dir, "state.bolt") },
}

// openBackend opens a backend with manual compaction (automatic compaction
// off, nothing retained) so tests decide.
func openBackend(endpoint string) (server.Backend, func(), error) {
	return backendtest.Open(endpoint, -1, 0, 100*time.Millisecond)
}

func TestBackends(t *testing.T) {
	for name, endpoint := range backends {
		t.Run(name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T, dir string) (server.Backend, func()) {
				b, done, err := openBackend(endpoint(dir))
				if err != nil {
					t.Fatal(err)
				}
				return b, done
			})
			t.Run("crash recovery", func(t *testing.T) { testCrash(t, endpoint(t.TempDir())) })
		})
	}
}

// crashWriterEnv makes the test binary a writer that prints every
// acknowledged write, to be killed with SIGKILL mid-stream.
const crashWriterEnv = "DATASTORE_CRASH_WRITER"

func TestMain(m *testing.M) {
	if endpoint := os.Getenv(crashWriterEnv); endpoint != "" {
		os.Exit(crashWriter(endpoint))
	}
	os.Exit(m.Run())
}

func crashWriter(endpoint string) int {
	b, _, err := openBackend(endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ { // concurrent writers, as the apiserver's
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("/crash/%d/%d", w, i)
				rev, err := b.Create(context.Background(), key, []byte(key), 0)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return
				}
				fmt.Printf("ack %s %d\n", key, rev) // unbuffered: one write(2) per line
			}
		}(w)
	}
	wg.Wait()
	return 1
}

func testCrash(t *testing.T, endpoint string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashWriterEnv+"="+endpoint)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	s := bufio.NewScanner(out)
	for s.Scan() && len(acked) < 400 {
		f := strings.Fields(s.Text())
		if len(f) == 3 && f[0] == "ack" {
			acked[f[1]], _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL) // mid-write: the writers never stop by themselves
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("writer acknowledged only %d writes", len(acked))
	}

	b, done, err := openBackend(endpoint)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer done()
	for key, rev := range acked {
		_, kv, err := b.Get(context.Background(), key, 0, false)
		if err != nil || kv == nil || string(kv.Value) != key || kv.ModRevision != rev {
			t.Fatalf("acknowledged write %s@%d lost after kill -9: %+v %v", key, rev, kv, err)
		}
	}
	// And the store still takes writes.
	if _, err := b.Create(context.Background(), "/after-crash", []byte("x"), 0); err != nil {
		t.Errorf("write after recovery: %v", err)
	}
}

// The default SQLite file keeps its WAL index in memory: no state.db-shm,
// whose mapped pages every commit would dirty.
func TestDefaultSQLiteHasNoSharedMemoryFile(t *testing.T) {
	dir := t.TempDir()
	b, done, err := openBackend(DefaultSQLiteDSN(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	for i := 0; i < 20; i++ {
		if _, err := b.Create(context.Background(), fmt.Sprintf("/registry/leases/l%d", i), []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db-wal")); err != nil {
		t.Fatalf("the datastore is not in WAL mode: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db-shm")); err == nil {
		t.Fatal("state.db-shm exists: the WAL index is a shared file, not process memory (vfs=unix-excl not applied)")
	}
}
