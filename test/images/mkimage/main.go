// Command mkimage writes a one-layer OCI image archive from local files, the
// way `cluster` makes its pause image: no registry, no Docker.
//
//	mkimage -name localhost/test/webapp:v1 -o webapp.tar -entrypoint /webapp /webapp=./bin/webapp
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/cluster-io/cluster/agent/images"
)

func main() {
	name := flag.String("name", "", "image reference with a tag, e.g. localhost/test/webapp:v1")
	out := flag.String("o", "", "output archive (.tar)")
	entrypoint := flag.String("entrypoint", "", "entrypoint, space separated")
	flag.Parse()
	if *name == "" || *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -name REF -o OUT.tar [-entrypoint CMD] /path/in/image=local/file ...")
		os.Exit(2)
	}
	spec := images.Spec{Name: *name, Entrypoint: strings.Fields(*entrypoint)}
	for _, arg := range flag.Args() {
		dst, src, ok := strings.Cut(arg, "=")
		if !ok {
			fail(fmt.Errorf("%q: want /path/in/image=local/file", arg))
		}
		data, err := os.ReadFile(src)
		if err != nil {
			fail(err)
		}
		st, err := os.Stat(src)
		if err != nil {
			fail(err)
		}
		spec.Files = append(spec.Files, images.File{Path: dst, Mode: int64(st.Mode().Perm()), Data: data})
	}
	f, err := os.Create(*out)
	if err != nil {
		fail(err)
	}
	if err := images.WriteOCIArchive(f, spec); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}
