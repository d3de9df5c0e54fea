package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestTrimAfter(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
	}{
		{"", defaultTrimAfter},
		{"0", 0},
		{"30s", 30 * time.Second},
		{"2m", 2 * time.Minute},
		{"soon", defaultTrimAfter}, // the server refuses it before any shim starts
		{"-5s", defaultTrimAfter},
	} {
		t.Setenv(envTrimAfter, tc.env)
		if got := trimAfter(); got != tc.want {
			t.Errorf("%s=%q: %v; want %v", envTrimAfter, tc.env, got, tc.want)
		}
	}
}

// After releaseStart the binary's read-only mappings are read a page at a
// time, and its pages the process does not map have left the page cache.
func TestReleaseStart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(exe); err != nil { // the whole file cached
		t.Fatal(err)
	}
	if cached, total := cachedPages(t, exe); cached < total*9/10 {
		t.Fatalf("after reading the test binary, %d of its %d pages cached", cached, total)
	}
	if err := releaseStart(); err != nil {
		t.Fatal(err)
	}
	if cached, total := cachedPages(t, exe); cached > total/2 {
		t.Errorf("after releaseStart %d of the test binary's %d pages still cached", cached, total)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	readOnly := 0
	var perms string
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-") && strings.HasSuffix(line, " "+exe):
			perms = f[1]
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			perms = "" // another mapping
		case len(f) > 0 && f[0] == "VmFlags:" && perms != "" && perms[1] != 'w':
			readOnly++
			if !slices.Contains(f[1:], "rr") {
				t.Errorf("read-only mapping (%s) of the test binary has VmFlags %v; want rr (random read)", perms, f[1:])
			}
		}
	}
	if readOnly == 0 {
		t.Error("no read-only mapping of the test binary in /proc/self/smaps")
	}
}

// cachedPages maps the file and counts its pages in the page cache (mincore).
func cachedPages(t *testing.T, path string) (cached, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m)), uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			cached++
		}
	}
	return cached, len(vec)
}
