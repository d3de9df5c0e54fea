package bundle

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const testHash = "0123456789abcdef"

func archiveOf(t *testing.T, names []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: 0o755, Size: int64(len(n)), Typeflag: tar.TypeReg})
		tw.Write([]byte(n))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestExtractOnceAndComplete(t *testing.T) {
	dir := t.TempDir()
	archive := archiveOf(t, Required)
	bin, err := extract(dir, archive, testHash)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Required {
		st, err := os.Stat(filepath.Join(bin, n))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", n, err, st)
		}
	}
	// A second start reuses the directory: a changed file stays changed.
	marker := filepath.Join(bin, "runc")
	os.WriteFile(marker, []byte("kept"), 0o755)
	if _, err := extract(dir, archive, testHash); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "kept" {
		t.Error("second Extract unpacked again")
	}
}

func TestExtractRefusesIncompleteBundle(t *testing.T) {
	dir := t.TempDir()
	_, err := extract(dir, archiveOf(t, []string{"runc"}), testHash)
	if err == nil || !strings.Contains(err.Error(), "missing from the bundle") {
		t.Fatalf("incomplete bundle: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "data"))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// release must lose nothing: the pages come back from the file.
func TestReleaseKeepsContent(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if !bytes.Equal(m, want) {
		t.Fatal("set-up: mapping differs from the file")
	}
	release(m[100:]) // unaligned start: only whole pages inside are dropped
	if !bytes.Equal(m, want) {
		t.Fatal("content changed after release")
	}
}

func TestUnpackWithoutBundle(t *testing.T) {
	if archive != "" {
		t.Skip("built with -tags bundled")
	}
	_, err := Unpack(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "scripts/build") {
		t.Fatalf("Unpack without an archive: %v, want an error naming scripts/build", err)
	}
}
