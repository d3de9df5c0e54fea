package memtrim

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestReadOnlyRegionsOf(t *testing.T) {
	exe := "/usr/local/bin/cluster"
	maps := `00400000-05b66000 r-xp 00000000 fe:01 1234                       /usr/local/bin/cluster
05b66000-0d731000 r--p 05766000 fe:01 1234                       /usr/local/bin/cluster
0d731000-0d8ff000 rw-p 0d331000 fe:01 1234                       /usr/local/bin/cluster
0d8ff000-0da00000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:01 999                        /usr/lib/libc.so
7f0000001000-7f0000002000 r--s 00000000 fe:01 1234                       /usr/local/bin/cluster
7f0000002000-7f0000003000 r--p 00000000 fe:01 1234                       /usr/local/bin/cluster old
7f0000003000-7f0000004000 r--p 00000000 00:2a 5555                       /usr/local/bin/cluster
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
`
	got, err := readOnlyRegionsOf(maps, exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []region{
		{0x00400000, 0x05b66000}, // text
		{0x05b66000, 0x0d731000}, // rodata
		// not: its writable data, another file, a shared mapping, a path
		// that only begins with the binary's
		{0x7f0000003000, 0x7f0000004000}, // same path, another device (overlayfs shows the file underneath)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("regions\n got %x\nwant %x", got, want)
	}

	got, err = readOnlyRegionsOf("00400000-00500000 r-xp 00000000 fe:01 77 /usr/local/bin/cluster (deleted)\n", "/usr/local/bin/cluster (deleted)")
	if err != nil || len(got) != 1 {
		t.Errorf("a replaced binary's mapping: %x, %v", got, err)
	}
	if _, err := readOnlyRegionsOf("0500000-0400000 r-xp 00000000 fe:01 77 /usr/local/bin/cluster\n", exe); err == nil {
		t.Error("a range that ends before it starts: no error")
	}
}

func TestAfterFromEnv(t *testing.T) {
	tests := []struct {
		value   string
		unset   bool
		want    time.Duration
		wantErr bool
	}{
		{unset: true, want: DefaultAfter},
		{value: "", want: DefaultAfter},
		{value: "0", want: 0},
		{value: "0s", want: 0},
		{value: "90s", want: 90 * time.Second},
		{value: "5m", want: 5 * time.Minute},
		{value: "60", wantErr: true}, // a duration needs its unit
		{value: "-1s", wantErr: true},
		{value: "soon", wantErr: true},
	}
	for _, tt := range tests {
		if tt.unset {
			t.Setenv(EnvAfter, "")
			os.Unsetenv(EnvAfter)
		} else {
			t.Setenv(EnvAfter, tt.value)
		}
		got, err := AfterFromEnv()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s=%q: %v, %v; want %v (error %v)", EnvAfter, tt.value, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), EnvAfter) {
			t.Errorf("error %q does not name %s", err, EnvAfter)
		}
	}
}

// blob is read-only data of the test binary (an embedded string lives in
// its rodata segment), 2 MB that nothing but this test reads.
//
//go:embed testdata/blob.txt
var blob string

// Release unmaps the binary's read-only pages, and they read back the same.
func TestReleaseUnmapsAndKeepsContent(t *testing.T) {
	want, err := os.ReadFile("testdata/blob.txt")
	if err != nil {
		t.Fatal(err)
	}
	if blob != string(want) { // reads every page: all mapped now
		t.Fatal("embedded blob differs from testdata/blob.txt")
	}
	start := uintptr(unsafe.Pointer(unsafe.StringData(blob)))
	mapped, pages := mappedPages(t, start, len(blob))
	if mapped != pages {
		t.Fatalf("after reading the blob, %d of its %d pages mapped", mapped, pages)
	}

	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if n < int64(len(blob)) {
		t.Errorf("Release reports %d bytes, less than the blob", n)
	}
	// The kernel maps up to 64 kB around a faulting page (fault-around):
	// code or data next to the blob, run since, may bring back its ends.
	if mapped, _ := mappedPages(t, start, len(blob)); mapped > 2*faultAround {
		t.Errorf("after Release %d of the blob's %d pages still mapped", mapped, pages)
	}
	if blob != string(want) {
		t.Error("the blob reads differently after Release")
	}
	if mapped, _ := mappedPages(t, start, len(blob)); mapped != pages {
		t.Errorf("read again, %d of %d pages mapped", mapped, pages)
	}
}

// After Release a page the process touches comes back alone: its untouched
// neighbours are neither mapped with it (fault-around maps only cached
// pages, and they left the cache) nor read ahead (MADV_RANDOM).
func TestReleaseFaultsInOnlyTouchedPages(t *testing.T) {
	start := uintptr(unsafe.Pointer(unsafe.StringData(blob)))
	var sum byte
	for i := 0; i < len(blob); i += 512 {
		sum += blob[i] // every page cached and mapped
	}
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
	flags := vmFlagsAt(t, start)
	if !slices.Contains(flags, "rr") {
		t.Errorf("the blob's mapping has VmFlags %v after Release; want rr (random read)", flags)
	}
	mid := len(blob) / 2
	sum += blob[mid]
	mapped, pages := mappedPages(t, start, len(blob))
	if mapped == 0 || mapped > 2 {
		t.Errorf("after Release and reading one byte, %d of the blob's %d pages mapped (%d); want that page alone", mapped, pages, sum)
	}
}

// vmFlagsAt is the VmFlags line of the mapping holding addr
// (/proc/self/smaps).
func vmFlagsAt(t *testing.T, addr uintptr) []string {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	inside := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				inside = uint64(addr) >= a && uint64(addr) < b
				continue
			}
		}
		if inside && f[0] == "VmFlags:" {
			return f[1:]
		}
	}
	t.Fatalf("no mapping holds %#x in /proc/self/smaps", addr)
	return nil
}

// faultAround is the kernel's default fault_around_bytes (64 kB) in pages.
var faultAround = 65536 / os.Getpagesize()

// mappedPages counts the whole pages within [start, start+size) that this
// process has mapped (/proc/self/pagemap, bit 63: present).
func mappedPages(t *testing.T, start uintptr, size int) (mapped, pages int) {
	t.Helper()
	ps := uintptr(os.Getpagesize())
	first := (start + ps - 1) / ps
	last := (start + uintptr(size)) / ps // exclusive
	if last <= first {
		t.Fatal("blob smaller than a page")
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	entries := make([]byte, 8*(last-first))
	if _, err := pm.ReadAt(entries, int64(first*8)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(entries); i += 8 {
		if binary.LittleEndian.Uint64(entries[i:])&(1<<63) != 0 {
			mapped++
		}
	}
	return mapped, int(last - first)
}

// ReleaseBytes unmaps the whole pages inside a slice of read-only data.
func TestReleaseBytes(t *testing.T) {
	if blob == "" {
		t.Fatal("no blob")
	}
	b := unsafe.Slice(unsafe.StringData(blob), len(blob))
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	var sum byte
	for i := 0; i < len(b); i += 512 {
		sum += b[i] // maps every page
	}
	if mapped, pages := mappedPages(t, start, len(b)); mapped != pages {
		t.Fatalf("after reading, %d of %d pages mapped (%d)", mapped, pages, sum)
	}
	ReleaseBytes(b[100:]) // an unaligned start: only the whole pages inside go
	if mapped, pages := mappedPages(t, start, len(b)); mapped > 2*faultAround {
		t.Errorf("after ReleaseBytes %d of %d pages still mapped", mapped, pages)
	}
	want, err := os.ReadFile("testdata/blob.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(want) {
		t.Error("content changed after ReleaseBytes")
	}
}
