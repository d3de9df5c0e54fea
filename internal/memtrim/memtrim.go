// Package memtrim gives back the pages of the cluster binary that a process
// touched only while it started.
//
// The server or agent runs the one ~210 MB binary, containerd included.
// Starting touches much of it (the init functions of ~1,500 packages,
// building the control plane, making images), and those pages stay mapped,
// counted in the process's RSS and PSS, for its whole life, although an
// idle process runs a fraction of that code. Once the start is over,
// Release unmaps the binary's read-only segments and drops the pages no
// process maps from the page cache; what the process still runs is read
// back in at its next use, a page at a time.
//
// Unmapping alone is not enough: when a page faults in, the kernel also
// maps those of its neighbours that are in the page cache (fault-around,
// 64 kB), and when it must read a page it reads ahead around it. Right
// after a start the whole binary is cached, so every page an idle server
// touched brought up to 15 untouched neighbours back with it: ~97 MB
// mapped for a working set of ~62 MB. Readahead is turned off for these
// mappings (MADV_RANDOM) and the unmapped pages leave the cache, so the
// mappings settle at the pages the process uses. The price is ~4,500 reads
// of single pages from disk in the half-minute after the release, then a
// few when code that has not run since (a rare request, a periodic task)
// runs.
//
// The same moment lowers the garbage collector's target (idle.go): a start
// allocates fast and wants room, an idle process little.
package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvAfter names the environment variable that sets how long after its
// start a process releases the start's pages; "0" never.
const EnvAfter = "CLUSTER_TRIM_AFTER"

// DefaultAfter leaves the start, and the first pods' start, time to finish.
const DefaultAfter = 60 * time.Second

// AfterFromEnv is the delay EnvAfter asks for, DefaultAfter if unset.
func AfterFromEnv() (time.Duration, error) {
	v, ok := os.LookupEnv(EnvAfter)
	if !ok || v == "" {
		return DefaultAfter, nil
	}
	d, err := time.ParseDuration(v)
	if v == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 60s, or 0 to keep the start's pages mapped", EnvAfter, v)
	}
	return d, nil
}

// Release unmaps the pages of this process's read-only mappings of its own
// executable (madvise MADV_DONTNEED), turns readahead off for them
// (MADV_RANDOM), drops the executable's unmapped pages from the page
// cache (fadvise POSIX_FADV_DONTNEED), and returns the mappings' size.
// They are private, never written mappings of the file, so nothing is
// lost: the kernel reads the file's page again at the next access.
// Writable mappings (the binary's data) are left alone. Pages another
// process maps (a second cluster process of the same binary) stay cached.
func Release() (int64, error) {
	// The kernel renders this link and the paths in maps alike (" (deleted)"
	// appended to both once the binary is replaced), also on overlayfs.
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("own executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	regions, err := readOnlyRegionsOf(string(maps), exe)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, r := range regions {
		// Random first, so that what runs on meanwhile faults in one page.
		if err := madvise(r.start, r.end-r.start, unix.MADV_RANDOM); err != nil {
			return total, fmt.Errorf("madvise random %#x-%#x: %w", r.start, r.end, err)
		}
		if err := dontNeed(r.start, r.end-r.start); err != nil {
			return total, fmt.Errorf("madvise %#x-%#x: %w", r.start, r.end, err)
		}
		total += int64(r.end - r.start)
	}
	if total == 0 {
		return 0, fmt.Errorf("no read-only mapping of %s in /proc/self/maps", exe)
	}
	if err := dropCached("/proc/self/exe"); err != nil {
		return total, err
	}
	return total, nil
}

// dropCached asks the kernel to drop the file's pages that no process maps
// from the page cache. /proc/self/exe opens the running binary also after
// an upgrade replaced its path. On tmpfs it does nothing.
func dropCached(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	defer f.Close()
	// Only written-back pages can leave the cache: a binary copied in just
	// before the start may still be dirty.
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("write back own executable: %w", err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop own executable from the page cache: %w", err)
	}
	return nil
}

// ReleaseBytes unmaps the whole pages inside b, read-only data of the binary
// (an embedded string) that this process has done with; the pages at its
// ends, shared with other data, stay.
func ReleaseBytes(b []byte) {
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	first := (start + page - 1) / page * page
	end := (start + uintptr(len(b))) / page * page
	if end > first {
		_ = dontNeed(first, end-first)
	}
}

// dontNeed is madvise(MADV_DONTNEED) on a page-aligned range.
func dontNeed(start, length uintptr) error { return madvise(start, length, unix.MADV_DONTNEED) }

// madvise on a page-aligned range of this process's own mappings, which
// unix.Madvise (taking a []byte) cannot name without unsafe either.
func madvise(start, length uintptr, advice int) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, start, length, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

type region struct{ start, end uintptr }

// readOnlyRegionsOf parses /proc/PID/maps text: the private mappings
// without write permission of the file at path exe.
func readOnlyRegionsOf(maps string, exe string) ([]region, error) {
	var out []region
	sc := bufio.NewScanner(strings.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset major:minor inode [path, which may hold spaces]
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 6 {
			continue // anonymous
		}
		perms := f[1]
		if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
			continue
		}
		if afterFields(line, 5) != exe {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps line %q: bad address range", sc.Text())
		}
		out = append(out, region{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// afterFields is what follows the first n space-separated fields of line,
// trimmed.
func afterFields(line string, n int) string {
	rest := line
	for range n {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return ""
		}
		rest = rest[i:]
	}
	return strings.TrimSpace(rest)
}

// residentBytes is this process's VmRSS, 0 if unknown.
func residentBytes() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
