// Package images makes and imports container images without a registry: it
// writes one-layer OCI image archives from local files (the pause image the
// binary carries, test images) and imports every archive an edge site drops
// into <data-dir>/agent/images.
package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one regular file of an image's single layer.
type File struct {
	Path string // absolute path inside the image, e.g. /pause
	Mode int64  // permission bits
	Data []byte
}

// Spec describes a one-layer image.
type Spec struct {
	// Name is the full reference the image is known by, e.g.
	// "localhost/cluster/pause:3.10". It must carry a tag.
	Name       string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	// ExposedPorts like "8080/tcp".
	ExposedPorts []string
}

// epoch makes archives reproducible: the same files give the same digests, so
// an unchanged pause image is never imported twice.
var epoch = time.Unix(0, 0).UTC()

// WriteOCIArchive writes spec as an OCI image layout in a tar stream, the
// format `ctr images import` and containerd's client Import read.
func WriteOCIArchive(w io.Writer, spec Spec) error {
	if _, tag, ok := strings.Cut(lastPathElem(spec.Name), ":"); !ok || tag == "" {
		return fmt.Errorf("image name %q: needs a tag", spec.Name)
	}
	layer, diffID, err := layerTarZstd(spec.Files)
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", spec.Name, err)
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerZstd,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}

	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			Env:        spec.Env,
			User:       spec.User,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	if len(spec.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgJSON), Size: int64(len(cfgJSON))}

	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	manifestDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestJSON),
		Size:      int64(len(manifestJSON)),
		Platform:  &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Annotations: map[string]string{
			// containerd names the imported image after this annotation.
			"io.containerd.image.name": spec.Name,
			ocispec.AnnotationRefName:  tagOf(spec.Name),
		},
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	layoutJSON, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutJSON},
		{ocispec.ImageIndexFile, indexJSON},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(layerDesc.Digest), layer},
		{blobPath(manifestDesc.Digest), manifestJSON},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := writeTarFile(tw, e.name, 0o644, e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerTarZstd returns the zstd-compressed layer and the digest of its
// uncompressed tar (the diff ID). Images are made at a node's first start,
// alongside the control plane on two cores: zstd's fastest level costs a
// fraction of gzip's CPU here and in containerd's unpack (CoreDNS's 53 MB
// took 0.8 s to gzip), and the tar streams into the hash and the encoder
// instead of into a buffer as large as the files (its growth and page
// faults cost another 0.45–0.8 s).
func layerTarZstd(files []File) ([]byte, digest.Digest, error) {
	var layer bytes.Buffer
	enc, err := zstd.NewWriter(&layer, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, "", err
	}
	diffID := sha256.New()
	if err := writeLayerTar(io.MultiWriter(diffID, enc), files); err != nil {
		enc.Close()
		return nil, "", err
	}
	if err := enc.Close(); err != nil {
		return nil, "", err
	}
	return layer.Bytes(), digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(diffID.Sum(nil))), nil
}

// writeLayerTar writes files, sorted, each under its parent directories.
func writeLayerTar(w io.Writer, files []File) error {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range sorted {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if p == "" {
			return fmt.Errorf("file path %q is not a file", f.Path)
		}
		// Parent directories first, each once.
		var parents []string
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return err
			}
		}
		if err := writeTarFile(tw, p, f.Mode, f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func lastPathElem(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}

func tagOf(name string) string {
	_, tag, _ := strings.Cut(lastPathElem(name), ":")
	return tag
}
