package integration

import (
	"context"
	"fmt"
	"github.com/cluster-io/cluster/test/harness"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startPostgres runs a private PostgreSQL server on a loopback port as the
// postgres user (it refuses root) and returns its port. .ci/run installs the
// Debian postgresql package; the test fails, not skips, without it.
func startPostgres(t *testing.T) int {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("user postgres: %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir, err := os.MkdirTemp("", "cluster-pg")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chown(dir, uid, gid)
	port := harness.FreePort(t)
	asPostgres := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := asPostgres("initdb", "-D", data, "-A", "trust", "-U", "postgres"); err != nil {
		t.Fatal(err)
	}
	if err := asPostgres("pg_ctl", "-D", data, "-w", "-l", filepath.Join(dir, "log"),
		"-o", fmt.Sprintf("-k %s -p %d -c listen_addresses=127.0.0.1", dir, port), "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		asPostgres("pg_ctl", "-D", data, "-m", "fast", "stop")
		os.RemoveAll(dir)
	})
	return port
}

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
