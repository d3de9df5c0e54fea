// Package bundle carries the node binaries (runc, the containerd runc shim,
// the CNI plugins, crictl, pause and CoreDNS) inside `cluster`, as one
// zstd-compressed tar, and unpacks them once per content hash into
// <data-dir>/data/<hash>/bin, so the node never uses the host's copies and
// an upgrade never mixes versions.
package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/klauspost/compress/zstd"

	"github.com/cluster-io/cluster/internal/memtrim"
	"github.com/cluster-io/cluster/logging"
)

// archive and archiveSum (hex SHA-256 of the uncompressed tar) are set by
// embed.go when scripts/build builds with -tags bundled. A string, not an
// embed.FS: reading a file from an FS copies it to the heap, and the pages
// of a string can be given back (release) once the archive is unpacked.
var archive, archiveSum string

// maxWindow matches scripts/build's zstd --long=27: the binaries share much
// code, and a long window finds it (24 MB instead of gzip's 46 MB).
const maxWindow = 1 << 27

// Binaries a node needs; Extract fails if the build left one out.
var Required = []string{
	"runc", "containerd-shim-runc-v2", "pause",
	"bridge", "host-local", "loopback", "portmap", "bandwidth", "flannel",
	"cluster-killall.sh", "crictl", "coredns",
}

var log = logging.For("agent")

// Unpack unpacks the embedded archive (see extract), named by the sum the
// build computed, so that a start which finds it unpacked reads none of it.
// It fails naming the fix when the binary was built without it (plain `go
// build` instead of scripts/build).
func Unpack(dataDir string) (string, error) {
	if archive == "" || len(archiveSum) < 16 {
		return "", errors.New("this cluster binary carries no node binaries (runc, shim, CNI plugins); build it with scripts/build, or run the server with --disable-agent")
	}
	b := unsafe.Slice(unsafe.StringData(archive), len(archive))
	defer release(b)
	return extract(dataDir, b, archiveSum[:16])
}

// release drops b's pages from this process's memory. b is read-only data
// of the binary, mapped from its file and never written, so MADV_DONTNEED
// loses nothing: the kernel would read it from the file again. Without it
// the 24 MB stay resident until the process releases all the start's pages
// (internal/memtrim), or for its life if that is turned off.
func release(b []byte) { memtrim.ReleaseBytes(b) }

// extract unpacks archive into <dataDir>/data/<hash>/bin unless a previous
// start already did, and returns that bin directory.
func extract(dataDir string, archive []byte, hash string) (string, error) {
	base := filepath.Join(dataDir, "data")
	final := filepath.Join(base, hash)
	binDir := filepath.Join(final, "bin")
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return binDir, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("node binaries: %w", err)
	}
	log.Infof("unpacking the node binaries (%d MB compressed: runc, shim, CNI plugins, crictl, pause, CoreDNS) into %s…", len(archive)>>20, final)
	// Unpack beside the final place and rename, so a crash mid-way never
	// leaves a half-written bin directory that looks complete.
	tmp, err := os.MkdirTemp(base, ".unpack-"+hash+"-")
	if err != nil {
		return "", fmt.Errorf("node binaries: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := untar(archive, filepath.Join(tmp, "bin")); err != nil {
		return "", fmt.Errorf("node binaries: unpack: %w", err)
	}
	for _, name := range Required {
		if _, err := os.Stat(filepath.Join(tmp, "bin", name)); err != nil {
			return "", fmt.Errorf("node binaries: %s missing from the bundle; rebuild with scripts/build", name)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	_ = os.RemoveAll(final) // an incomplete leftover from a crash
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("node binaries: %w", err)
	}
	return binDir, nil
}

func untar(archive []byte, dir string) error {
	zr, err := zstd.NewReader(bytes.NewReader(archive), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	// The decoder's window (128 MB) is garbage after this; the start's
	// end gives the heap back at once (server.Run, agent.Run).
	defer zr.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
			continue // flat archive of regular files; ignore anything else
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
}
