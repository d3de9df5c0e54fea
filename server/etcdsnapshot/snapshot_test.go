package etcdsnapshot

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name string, age time.Duration) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
}

func names(s []Snapshot) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Name)
	}
	return out
}

func TestListPruneDelete(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "etcd-snapshot-n1-1", 4*time.Hour)
	write(t, dir, "etcd-snapshot-n1-2", 3*time.Hour)
	write(t, dir, "etcd-snapshot-n1-3", 2*time.Hour)
	write(t, dir, "etcd-snapshot-n2-1", 5*time.Hour) // another node's
	write(t, dir, "manual-n1-1", 6*time.Hour)        // another name's
	write(t, dir, "half.part", time.Hour)            // a save in progress

	all, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"manual-n1-1", "etcd-snapshot-n2-1", "etcd-snapshot-n1-1", "etcd-snapshot-n1-2", "etcd-snapshot-n1-3"}
	if got := names(all); !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v (oldest first, no .part)", got, want)
	}

	deleted, err := Prune(dir, "etcd-snapshot-n1", 2)
	if err != nil || !slices.Equal(deleted, []string{"etcd-snapshot-n1-1"}) {
		t.Fatalf("Prune = %v, %v; want the oldest of n1's only", deleted, err)
	}
	all, _ = List(dir)
	if got := names(all); len(got) != 4 {
		t.Fatalf("after Prune: %v", got)
	}

	if err := Delete(dir, []string{"manual-n1-1", "no-such"}); err == nil || !strings.Contains(err.Error(), "no snapshot no-such") {
		t.Fatalf("Delete with a missing name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "manual-n1-1")); err != nil {
		t.Fatalf("a failed Delete removed a snapshot: %v", err)
	}
	if err := Delete(dir, []string{"../x"}); err == nil {
		t.Fatal("Delete accepted a path")
	}
	if err := Delete(dir, []string{"manual-n1-1"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := List(filepath.Join(dir, "missing")); s != nil {
		t.Fatalf("List of a missing dir: %v", s)
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{"etcd-snapshot": true, "pre-upgrade.1": true, "": false, "A": false, "a/b": false, "-a": false} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestRestoreRefusesACorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte(strings.Repeat("x", 4096+32)), 0o600)
	out := filepath.Join(dir, "out")
	if err := Restore(bad, out, "m", "https://10.0.0.1:2380"); err == nil {
		t.Fatal("Restore accepted a file that is no snapshot")
	}
}
