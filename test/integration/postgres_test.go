package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cluster-io/cluster/test/harness"
)

func startPostgres(t *testing.T) int { return harness.StartPostgres(t, "127.0.0.1") }

func TestPostgresDatastore(t *testing.T) {
	pgPort := startPostgres(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pgPort)
	s := newServer(t)
	s.start("--datastore-endpoint", dsn)
	c, err := s.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "in-postgres"}, Data: map[string]string{"k": "v"}}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.stop(syscall.SIGTERM)
	if _, err := os.Stat(filepath.Join(s.dataDir, "server", "db", "state.db")); err == nil {
		t.Error("a SQLite file was created although the datastore is PostgreSQL")
	}
	s.start("--datastore-endpoint", dsn)
	c, _ = s.client()
	got, err := c.CoreV1().ConfigMaps("default").Get(ctx, "in-postgres", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Errorf("configmap not kept in PostgreSQL across restart: %v", err)
	}
	s.stop(syscall.SIGTERM)
}

// A server waiting for a database that does not answer still stops at
// once on SIGTERM.
func TestUnreachableDatabaseStopsOnSIGTERM(t *testing.T) {
	s := newServer(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", harness.FreePort(t)) // nobody listens
	cmd := exec.Command(clusterBin, s.args("--datastore-endpoint", dsn)...)
	cmd.Env = harness.CleanEnv()
	var out harness.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Failed to ping database") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no sign of waiting for the database:\n%s", harness.Tail(out.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	begin := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		t.Logf("stopped %s after SIGTERM", time.Since(begin).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 15 s after SIGTERM:\n%s", harness.Tail(out.String(), 20))
	}
}
