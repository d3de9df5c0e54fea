package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ExecCrictl replaces this process with the bundled crictl, pointed at the
// node's containerd in dataDir (the host's /etc/crictl.yaml does not apply).
func ExecCrictl(dataDir string, args []string) error {
	bin := filepath.Join(dataDir, "data", "current", "bin", "crictl")
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("crictl: %s does not exist: start the node once (cluster server) to unpack its binaries, or set CLUSTER_DATA_DIR", bin)
	}
	p := Layout(dataDir)
	endpoint := "unix://" + p.ContainerdSocket
	argv := append([]string{"crictl", "--runtime-endpoint", endpoint, "--image-endpoint", endpoint}, args...)
	env := append(os.Environ(), "CRI_CONFIG_FILE="+p.CrictlConfig)
	return syscall.Exec(bin, argv, env)
}
