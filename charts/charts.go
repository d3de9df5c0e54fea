// Package charts holds the manifests the server brings: the RBAC its node
// components and join API need, and the packaged components. At every
// start they are written to <data-dir>/server/manifests, where the deploy
// controller (server/deploy) applies them like any file a user drops there.
package charts

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cluster-io/cluster/internal/fileutil"
)

//go:embed *.yaml
var files embed.FS

// static holds chart archives (static/*.tgz) for HelmCharts that name
// https://%{KUBERNETES_API}%/static/charts/<file>.
//
//go:embed static
var static embed.FS

// Components are the packaged components --disable turns off (k3s's names),
// with their files. A component without a file runs in the server process
// alone (servicelb); local-storage and metrics-server have both.
var Components = map[string]string{
	"coredns":        "coredns.yaml",
	"local-storage":  "local-storage.yaml",
	"servicelb":      "",
	"metrics-server": "metrics-server.yaml",
}

// ComponentNames lists the names --disable accepts.
func ComponentNames() []string {
	var names []string
	for n := range Components {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ValidateDisable checks --disable values.
func ValidateDisable(names []string) error {
	for _, n := range names {
		if _, ok := Components[n]; !ok {
			return fmt.Errorf("--disable %q: want one of %s", n, strings.Join(ComponentNames(), ", "))
		}
	}
	return nil
}

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

// Write puts the embedded manifests into dir, with vars (such as
// %{CLUSTER_DNS}%) filled in, and removes the files of disabled components
// (the deploy controller then removes their objects). The user's own files
// are left alone.
func Write(dir string, disabled []string, vars map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ms, err := All()
	if err != nil {
		return err
	}
	off := map[string]bool{}
	for _, d := range disabled {
		if f := Components[d]; f != "" {
			off[f] = true
		}
	}
	for _, m := range ms {
		path := filepath.Join(dir, m.Name)
		if off[m.Name] {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		data := m.Data
		for k, v := range vars {
			data = bytes.ReplaceAll(data, []byte("%{"+k+"}%"), []byte(v))
		}
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := fileutil.WriteAtomic(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WriteStatic puts the embedded chart archives into dir (the server's
// static charts folder), leaving other files there alone.
func WriteStatic(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	names, err := fs.Glob(static, "static/*.tgz")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := static.ReadFile(n)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.Base(n))
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := fileutil.WriteAtomic(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// NodeRBAC are the files a node needs to join and run flannel: the
// server applies them before its own node starts.
var NodeRBAC = []string{"join-rbac.yaml", "flannel-rbac.yaml"}

// Packaged reports whether name is one of the embedded files.
func Packaged(name string) bool {
	ms, _ := All()
	return slices.ContainsFunc(ms, func(m Manifest) bool { return m.Name == name })
}
