// Package bundle carries the node binaries (runc, the containerd runc shim,
// the CNI plugins, crictl, pause and CoreDNS) inside `cluster`, as one
// zstd-compressed tar, and unpacks them once per content hash into
// <data-dir>/data/<hash>/bin, so the node never uses the host's copies and
// an upgrade never mixes versions.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/cluster-io/cluster/logging"
)

//go:embed assets
var assets embed.FS

const archiveName = "assets/bin.tar.zst"

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

// Archive returns the embedded archive, or an error naming the fix when the
// binary was built without it (plain `go build` instead of scripts/build).
func Archive() ([]byte, error) {
	b, err := assets.ReadFile(archiveName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("this cluster binary carries no node binaries (runc, shim, CNI plugins); build it with scripts/build, or run the server with --disable-agent")
	}
	return b, err
}

// Extract unpacks archive into <dataDir>/data/<hash>/bin unless a previous
// start already did, and returns that bin directory.
func Extract(dataDir string, archive []byte) (string, error) {
	sum := sha256.Sum256(archive)
	hash := hex.EncodeToString(sum[:])[:16]
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
	defer func() {
		zr.Close()
		debug.FreeOSMemory() // the decoder's window is not needed again
	}()
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
