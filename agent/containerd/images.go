package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
)

// Namespace is the containerd namespace of the CRI plugin (the kubelet's).
const Namespace = "k8s.io"

// labels mark imported images as CRI-managed and pinned, so the kubelet's
// image garbage collection never deletes what cannot be pulled again.
var importLabels = map[string]string{
	"io.cri-containerd.image":  "managed",
	"io.cri-containerd.pinned": "pinned",
}

// Importer loads image archives (OCI layout or docker-archive tars) over
// one connection to containerd.
type Importer struct {
	client *client.Client
}

// NewImporter connects to the containerd at address.
func NewImporter(address string) (*Importer, error) {
	c, err := client.New(address, client.WithDefaultNamespace(Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("images: connect to containerd: %w", err)
	}
	return &Importer{client: c}, nil
}

// Close closes the connection.
func (im *Importer) Close() error { return im.client.Close() }

// Import reads one archive and unpacks its images for the CRI snapshotter;
// it returns the image names.
func (im *Importer) Import(ctx context.Context, r io.Reader) ([]string, error) {
	return im.importWithLabels(ctx, r, importLabels)
}

// sourceLabel records what a node-made image was made from.
const sourceLabel = "cluster.io/source"

// ImportBuilt makes sure image name, made from source (for example the
// hash of the binary in it), is present: when containerd has it with that
// source already, nothing is done (made is false); otherwise build writes
// the archive, which is imported as it is written (never held whole).
func (im *Importer) ImportBuilt(ctx context.Context, name, source string, build func(io.Writer) error) (made bool, err error) {
	if img, err := im.client.ImageService().Get(ctx, name); err == nil && img.Labels[sourceLabel] == source {
		return false, nil
	}
	labels := map[string]string{sourceLabel: source}
	for k, v := range importLabels {
		labels[k] = v
	}
	pr, pw := io.Pipe()
	built := make(chan error, 1)
	go func() {
		err := build(pw)
		pw.CloseWithError(err)
		built <- err
	}()
	_, err = im.importWithLabels(ctx, pr, labels)
	pr.Close() // an import that stopped early ends the build too
	// The build's own error, unless it only saw the import stop.
	if buildErr := <-built; buildErr != nil && !errors.Is(buildErr, io.ErrClosedPipe) {
		return false, fmt.Errorf("write the archive: %w", buildErr)
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func (im *Importer) importWithLabels(ctx context.Context, r io.Reader, labels map[string]string) ([]string, error) {
	c := im.client
	// One lease over import and unpack, so garbage collection cannot take
	// the blobs in between.
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))

	imgs, err := c.Import(ctx, r,
		client.WithImageRefTranslator(fullName),
		client.WithImageLabels(labels),
	)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, img := range imgs {
		i := client.NewImageWithPlatform(c, img, platforms.DefaultStrict())
		if err := i.Unpack(ctx, "overlayfs"); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("the archive holds no named image (give it a tag)")
	}
	return names, nil
}

// Has reports whether every named image is present.
func (im *Importer) Has(ctx context.Context, names []string) bool {
	for _, n := range names {
		if _, err := im.client.ImageService().Get(ctx, n); err != nil {
			return false
		}
	}
	return len(names) > 0
}

// fullName turns an archive's reference into the fully qualified name CRI
// and the kubelet resolve ("busybox:1" → "docker.io/library/busybox:1");
// tag-only OCI ref names ("latest") are dropped.
func fullName(ref string) string {
	if !strings.ContainsAny(ref, "/:@") {
		return ""
	}
	n, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	return n.String()
}

// importRecord remembers which archive files were imported, so an unchanged
// file is not read again at every start.
type importRecord map[string]struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	Images  []string  `json:"images"`
}

// ImportDir imports every *.tar in dir (the air-gap drop folder), logging
// progress. A broken archive is reported and skipped: it must not keep the
// node from starting.
func (im *Importer) ImportDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	var tars []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".tar") {
			tars = append(tars, e.Name())
		}
	}
	sort.Strings(tars)
	if len(tars) == 0 {
		return nil
	}
	recordPath := filepath.Join(dir, ".imported.json")
	record := importRecord{}
	if b, err := os.ReadFile(recordPath); err == nil {
		_ = json.Unmarshal(b, &record)
	}
	for i, name := range tars {
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if r, ok := record[name]; ok && r.Size == st.Size() && r.ModTime.Equal(st.ModTime()) && im.Has(ctx, r.Images) {
			log.Infof("images: [%d/%d] %s already imported (%s)", i+1, len(tars), name, strings.Join(r.Images, ", "))
			continue
		}
		log.Infof("images: [%d/%d] importing %s (%d MB)…", i+1, len(tars), name, st.Size()>>20)
		begin := time.Now()
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		names, err := im.Import(ctx, f)
		f.Close()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Errorf("images: [%d/%d] %s: %v (skipped)", i+1, len(tars), name, err)
			continue
		}
		log.Infof("images: [%d/%d] %s: imported %s in %s", i+1, len(tars), name, strings.Join(names, ", "), time.Since(begin).Round(time.Millisecond))
		r := record[name]
		r.Size, r.ModTime, r.Images = st.Size(), st.ModTime(), names
		record[name] = r
	}
	b, _ := json.MarshalIndent(record, "", "  ")
	return os.WriteFile(recordPath, b, 0o600)
}
