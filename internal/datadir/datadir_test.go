package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClaimNewAndReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerName)); err != nil {
		t.Errorf("marker not written: %v", err)
	}
	if _, err := Claim(dir); err == nil || !strings.Contains(err.Error(), "in use by another cluster process") {
		t.Errorf("second claim while locked: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Claim(dir)
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	l2.Release()
}

func TestForeignDirIsRefusedAndUntouched(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious.txt")
	os.WriteFile(precious, []byte("keep"), 0o644)
	_, err := Claim(dir)
	if err == nil || !strings.Contains(err.Error(), "not empty and was not created by cluster") {
		t.Fatalf("foreign dir: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("claim wrote into a foreign dir: %v", entries)
	}
}

func TestFileIsRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Claim(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as data dir: %v", err)
	}
}

func TestUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads anything; a path under a file is unusable for root too.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		if _, err := Claim(filepath.Join(f, "sub")); err == nil || !strings.Contains(err.Error(), "not usable") {
			t.Errorf("dir under a file: %v", err)
		}
		return
	}
	dir := filepath.Join(t.TempDir(), "locked")
	os.Mkdir(dir, 0o000)
	if _, err := Claim(dir); err == nil {
		t.Error("unreadable dir accepted")
	}
}

func TestSeedsBeforeFirstStart(t *testing.T) {
	cases := []struct {
		name  string
		files []string
		ok    bool
	}{
		{"only agent/images", []string{"agent/images/app.tar"}, true},
		{"agent has more", []string{"agent/images/app.tar", "agent/other"}, false},
		{"a sibling of agent", []string{"agent/images/app.tar", "notes.txt"}, false},
		{"containerd drop-in", []string{"agent/etc/containerd/config.d/90-debug.toml"}, true},
		{"manifests and images", []string{"server/manifests/app.yaml", "agent/images/app.tar", "agent/images/more/b.tar"}, true},
		{"file on the way to a seed", []string{"agent/etc/containerd/config.toml"}, false},
		{"seed name as a file", []string{"server/manifests"}, false},
		{"server state", []string{"server/manifests/app.yaml", "server/token"}, false},
		{"empty seed dirs", []string{"server/manifests/", "agent/etc/"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
				if !strings.HasSuffix(f, "/") {
					os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
				}
			}
			l, err := Claim(dir)
			if (err == nil) != c.ok {
				t.Fatalf("Claim: %v, want ok=%v", err, c.ok)
			}
			l.Release()
		})
	}
}
