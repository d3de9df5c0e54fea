// Package charts holds the manifests the server applies at every start
// (server-side apply, so a user's own fields survive): the RBAC our node
// components need, and later the packaged system components.
package charts

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed *.yaml
var files embed.FS

// Manifest is one embedded file.
type Manifest struct {
	Name string
	Data []byte
}

// All returns the embedded manifests in name order.
func All() ([]Manifest, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Manifest
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Manifest{Name: n, Data: b})
	}
	return out, nil
}
