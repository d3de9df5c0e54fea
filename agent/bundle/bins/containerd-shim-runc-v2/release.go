package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envTrimAfter is the server's and agent's CLUSTER_TRIM_AFTER, which
// containerd passes on to the shims it starts: "0" keeps everything mapped.
const envTrimAfter = "CLUSTER_TRIM_AFTER"

// defaultTrimAfter leaves a new pod's containers time to start.
const defaultTrimAfter = 60 * time.Second

// trimAfter is how long after its start a shim releases its start's pages;
// 0 never. A value the server or agent would have refused at its start
// cannot reach a shim, so one that does not parse means the default.
func trimAfter() time.Duration {
	v := os.Getenv(envTrimAfter)
	if v == "0" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d
	}
	return defaultTrimAfter
}

// releaseStart gives back the pages of its own binary that a shim touched
// only while it started, as internal/memtrim does for the server (whose
// package this module cannot import). Its read-only mappings are unmapped
// and read a page at a time from then on (MADV_RANDOM), and the pages no
// process maps leave the page cache, so that fault-around, which maps a
// faulting page's cached neighbours too, no longer brings back what an
// idle shim does not run. The pages other shims map stay cached.
func releaseStart() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	released := 0
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset dev inode path (the path last; it may hold spaces)
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(line, " "+exe) || len(f[1]) != 4 || f[1][1] == 'w' || f[1][3] != 'p' {
			continue
		}
		var start, end uintptr
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil || end <= start {
			return fmt.Errorf("maps line %q: bad address range", line)
		}
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, uintptr(advice)); errno != 0 {
				return fmt.Errorf("madvise %#x-%#x: %w", start, end, errno)
			}
		}
		released++
	}
	if released == 0 {
		return fmt.Errorf("no read-only mapping of %s in /proc/self/maps", exe)
	}
	bin, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer bin.Close()
	if err := unix.Fdatasync(int(bin.Fd())); err != nil { // only clean pages can leave the cache
		return err
	}
	return unix.Fadvise(int(bin.Fd()), 0, 0, unix.FADV_DONTNEED)
}
