package bundle

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

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
	bin, err := Extract(dir, archive)
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
	if _, err := Extract(dir, archive); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "kept" {
		t.Error("second Extract unpacked again")
	}
}

func TestExtractRefusesIncompleteBundle(t *testing.T) {
	dir := t.TempDir()
	_, err := Extract(dir, archiveOf(t, []string{"runc"}))
	if err == nil || !strings.Contains(err.Error(), "missing from the bundle") {
		t.Fatalf("incomplete bundle: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "data"))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
