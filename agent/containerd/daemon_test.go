package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrependPath(t *testing.T) {
	for _, tc := range []struct{ dir, path, want string }{
		{"/d/bin", "/usr/bin:/bin", "/d/bin:/usr/bin:/bin"},
		{"/d/bin", "/usr/bin:/d/bin:/bin", "/d/bin:/usr/bin:/bin"}, // once, first
		{"/d/bin", "", "/d/bin"},
		{"/d/bin", "/usr/bin::/bin", "/d/bin:/usr/bin:/bin"},
	} {
		if got := prependPath(tc.dir, tc.path); got != tc.want {
			t.Errorf("prependPath(%q, %q) = %q, want %q", tc.dir, tc.path, got, tc.want)
		}
	}
}

// A config containerd cannot read (a broken drop-in, say) stops the start
// with an error naming the file, before any plugin opens its data.
func TestDaemonRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("version = 4\nroot = [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", os.Getenv("PATH"))
	d := &Daemon{ConfigPath: path, BinDir: filepath.Join(dir, "bin")}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "start containerd: config "+path) {
		t.Errorf("Ready = %v; want an error naming %s", err, path)
	} else {
		t.Log(err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop after a failed start: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the failed start wrote into %s: %v", dir, entries)
	}
}

// A broken drop-in is named in the error; the start stops before containerd
// reads anything.
func TestDaemonNamesBrokenDropIn(t *testing.T) {
	dir := t.TempDir()
	dropIns := filepath.Join(dir, "config.d")
	if err := os.MkdirAll(dropIns, 0o700); err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(dropIns, "10-ok.toml"), filepath.Join(dropIns, "50-stats.toml")
	os.WriteFile(good, []byte("version = 4\n"), 0o600)
	os.WriteFile(bad, []byte("version = 4\n[plugins\n"), 0o600)
	d := &Daemon{ConfigPath: filepath.Join(dir, "config.toml"), DropInDir: dropIns, BinDir: filepath.Join(dir, "bin")}
	t.Setenv("PATH", os.Getenv("PATH"))
	err := d.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "drop-in "+bad+":") || strings.Contains(err.Error(), good) {
		t.Errorf("Start = %v; want an error naming %s only", err, bad)
	}
}
