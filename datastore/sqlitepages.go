package datastore

import (
	"database/sql"
	"errors"
	"fmt"
	"os"

	// The SQLite kine uses in our (cgo-free) binary.
	_ "modernc.org/sqlite"

	"github.com/cluster-io/cluster/logging"
)

// sqlitePageSize is the page size of the default SQLite datastore. Every
// kine write touches about ten pages (its row, six indexes, the sequence),
// and SQLite's WAL gets each touched page whole: with SQLite's default
// 4 KiB pages a Lease renewal appends ~45 kB, with 1 KiB pages ~16 kB
// (measured with kine's schema). Idle clusters write little else, so this is
// most of the flash wear a single node causes; reads of large objects cost
// a few more overflow pages.
const sqlitePageSize = 1024

// useSmallPages gives the SQLite file at path sqlitePageSize pages: a new
// file is created so, an existing one is rebuilt once (VACUUM in rollback
// mode, which is atomic; kine VACUUMs at every start anyway).
func useSmallPages(path string) error {
	if _, err := os.Stat(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("datastore %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return fmt.Errorf("datastore %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the pragmas below hold for one connection
	var size int
	if err := db.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		return fmt.Errorf("datastore %s: read page size: %w", path, err)
	}
	if size == sqlitePageSize {
		return nil
	}
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
		return fmt.Errorf("datastore %s: %w", path, err)
	}
	steps := []string{fmt.Sprintf("PRAGMA page_size=%d", sqlitePageSize), "PRAGMA journal_mode=WAL"}
	if tables > 0 {
		logging.For("kine").Infof("rebuilding %s with %d-byte pages (was %d), once", path, sqlitePageSize, size)
		steps = []string{"PRAGMA journal_mode=DELETE", steps[0], "VACUUM", "PRAGMA journal_mode=WAL"}
	}
	for _, q := range steps {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("datastore %s: %s: %w", path, q, err)
		}
	}
	return nil
}
