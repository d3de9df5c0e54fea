package bootstrap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealAndOpen(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	files := func(dir string) Files {
		return Files{"server-ca.crt": filepath.Join(dir, "tls", "server-ca.crt"), "server-ca.key": filepath.Join(dir, "tls", "server-ca.key"), "agent-token": filepath.Join(dir, "agent-token")}
	}
	if err := os.MkdirAll(filepath.Join(src, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"tls/server-ca.crt": "CERT", "tls/server-ca.key": "KEY"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := Seal("s3cret", files(src)) // agent-token absent: left out
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "KEY") {
		t.Fatal("the sealed data holds the key in clear")
	}
	if err := Open("wrong", sealed, files(dst)); !errors.Is(err, ErrWrongToken) {
		t.Fatalf("wrong secret: %v, want ErrWrongToken", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "tls")); err == nil {
		t.Error("a wrong secret wrote files")
	}
	if err := Open("s3cret", sealed, files(dst)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "tls", "server-ca.key")); string(b) != "KEY" {
		t.Errorf("restored key %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "tls", "server-ca.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("restored key mode %v", fi.Mode())
	}
	// Opening again is fine; a data dir with another CA is refused untouched.
	if err := Open("s3cret", sealed, files(dst)); err != nil {
		t.Error(err)
	}
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "tls", "server-ca.crt"), []byte("OTHER"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Open("s3cret", sealed, files(other)); err == nil || !strings.Contains(err.Error(), "belongs to another cluster") {
		t.Errorf("another cluster's data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "tls", "server-ca.key")); err == nil {
		t.Error("a refused data dir got files written")
	}
}
