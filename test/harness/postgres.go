package harness

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// StartPostgres runs a private PostgreSQL server on listen (an address of
// this machine), on a free port, as the postgres user (it refuses root) and returns its port. .ci/run installs the
// Debian postgresql package; the test fails, not skips, without it.
func StartPostgres(t *testing.T, listen string) int {
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
	port := FreePort(t)
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
	// Test hosts on a bridge connect from their own addresses.
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(hba, "host all all 0.0.0.0/0 trust")
	hba.Close()
	if err := asPostgres("pg_ctl", "-D", data, "-w", "-l", filepath.Join(dir, "log"),
		"-o", fmt.Sprintf("-k %s -p %d -c listen_addresses=%s", dir, port, listen), "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		asPostgres("pg_ctl", "-D", data, "-m", "fast", "stop")
		os.RemoveAll(dir)
	})
	return port
}
