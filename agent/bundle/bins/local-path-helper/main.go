// Command local-path-helper makes and removes the directories behind
// local-path volumes. The server's provisioner runs it in a pod on the
// volume's node, with the node's storage directory mounted at /data:
//
//	local-path-helper create NAME   mkdir /data/NAME, mode 0777
//	local-path-helper delete NAME   rm -rf /data/NAME
//
// NAME must be one path element, so nothing outside /data is touched.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const base = "/data"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "local-path-helper:", err)
		// The kubelet reports this file as the container's termination message.
		_ = os.WriteFile("/dev/termination-log", []byte(err.Error()), 0o644)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: local-path-helper create|delete NAME")
	}
	name := args[1]
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q is not a volume directory name", name)
	}
	dir := filepath.Join(base, name)
	switch args[0] {
	case "create":
		if err := os.Mkdir(dir, 0o777); err != nil && !os.IsExist(err) {
			return err
		}
		// Any pod user may write its volume, whatever the umask.
		return os.Chmod(dir, 0o777)
	case "delete":
		return os.RemoveAll(dir)
	default:
		return fmt.Errorf("unknown command %q: want create or delete", args[0])
	}
}
