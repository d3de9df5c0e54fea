package datastore

import (
	"database/sql"
	"path/filepath"
	"testing"
)

func pageSize(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int
	if err := db.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	return size
}

func TestUseSmallPages(t *testing.T) {
	t.Run("new file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := useSmallPages(path); err != nil {
			t.Fatal(err)
		}
		if got := pageSize(t, path); got != sqlitePageSize {
			t.Fatalf("page size %d, want %d", got, sqlitePageSize)
		}
	})
	t.Run("existing file keeps its rows", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"PRAGMA page_size=4096", "PRAGMA journal_mode=WAL",
			"CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO kine(name) VALUES ('/registry/a'), ('/registry/b')"} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(q, err)
			}
		}
		db.Close()
		if got := pageSize(t, path); got != 4096 {
			t.Fatalf("set-up: page size %d", got)
		}
		if err := useSmallPages(path); err != nil {
			t.Fatal(err)
		}
		if got := pageSize(t, path); got != sqlitePageSize {
			t.Fatalf("page size %d, want %d", got, sqlitePageSize)
		}
		db, err = sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		var mode string
		if err := db.QueryRow("SELECT count(*) FROM kine").Scan(&n); err != nil || n != 2 {
			t.Fatalf("rows after rebuild: %d, %v", n, err)
		}
		if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal mode %q, %v", mode, err)
		}
		if err := useSmallPages(path); err != nil { // idempotent
			t.Fatal(err)
		}
	})
}
