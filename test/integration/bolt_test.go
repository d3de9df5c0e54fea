package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The whole control plane on our bbolt kine driver: objects survive a
// SIGTERM restart and a SIGKILL restart.
func TestBoltDatastore(t *testing.T) {
	s := newServer(t)
	endpoint := "bolt://" + filepath.Join(filepath.Dir(s.dataDir), "bolt", "state.bolt")
	s.start("--datastore-endpoint", endpoint)
	c, err := s.client()
	if err != nil {
		t.Fatal(err)
	}
	createObjects(t, c)
	s.stop(syscall.SIGKILL)
	if _, err := os.Stat(filepath.Join(s.dataDir, "server", "db", "state.db")); err == nil {
		t.Error("a SQLite file was created although the datastore is bolt")
	}
	s.start("--datastore-endpoint", endpoint)
	if c, err = s.client(); err != nil {
		t.Fatal(err)
	}
	checkObjects(t, c)
	s.stop(syscall.SIGTERM)
	s.start("--datastore-endpoint", endpoint)
	if c, err = s.client(); err != nil {
		t.Fatal(err)
	}
	checkObjects(t, c)
	s.stop(syscall.SIGTERM)
}
