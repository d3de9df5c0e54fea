package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
