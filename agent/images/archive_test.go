package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readArchive(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
}

func TestWriteOCIArchiveIsValidAndReproducible(t *testing.T) {
	spec := Spec{Name: "localhost/test/app:v1", Entrypoint: []string{"/app"}, Files: []File{{Path: "/usr/bin/app", Mode: 0o755, Data: []byte("binary")}}}
	var a, b bytes.Buffer
	if err := WriteOCIArchive(&a, spec); err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIArchive(&b, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same spec gave different archives")
	}
	files := readArchive(t, a.Bytes())
	if _, ok := files["oci-layout"]; !ok {
		t.Fatal("no oci-layout")
	}
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %+v", err, index)
	}
	m := index.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != spec.Name || m.Annotations[ocispec.AnnotationRefName] != "v1" {
		t.Errorf("annotations %v", m.Annotations)
	}
	// Every blob is stored under its own digest.
	for name, data := range files {
		if !strings.HasPrefix(name, "blobs/sha256/") || strings.HasSuffix(name, "/") {
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != strings.TrimPrefix(name, "blobs/sha256/") {
			t.Errorf("blob %s does not match its digest", name)
		}
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(files["blobs/sha256/"+m.Digest.Encoded()], &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %v %+v", err, manifest)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(files["blobs/sha256/"+manifest.Config.Digest.Encoded()], &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.Config.Entrypoint[0] != "/app" {
		t.Fatalf("config %+v", cfg)
	}

	// The layer is a zstd-compressed tar whose digest is the config's diff
	// ID, holding the file under its parent directories.
	layer := manifest.Layers[0]
	if layer.MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Errorf("layer media type %s", layer.MediaType)
	}
	zr, err := zstd.NewReader(bytes.NewReader(files["blobs/sha256/"+layer.Digest.Encoded()]))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != cfg.RootFS.DiffIDs[0].String() {
		t.Errorf("diff ID %s is not the uncompressed layer's digest", cfg.RootFS.DiffIDs[0])
	}
	entries := readArchive(t, raw)
	if string(entries["usr/bin/app"]) != "binary" {
		t.Errorf("layer entries %v", entries)
	}
	for _, d := range []string{"usr/", "usr/bin/"} {
		if _, ok := entries[d]; !ok {
			t.Errorf("layer has no directory %s", d)
		}
	}
}
