package agent

import (
	"fmt"
	"os"
	"os/exec"
)

// Preflight checks, before anything is started or written, what a node
// cannot run without, so the user gets one clear line instead of a daemon
// failing deep inside its start.
func Preflight(kubeProxyArgs []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("running a node (containerd, kubelet, flannel, kube-proxy) needs root: run as root, or add --disable-agent to run the control plane only")
	}
	need := []string{"iptables", "iptables-save", "iptables-restore"}
	if proxyMode(kubeProxyArgs) == "nftables" {
		need = append(need, "nft")
	}
	for _, cmd := range need {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("the node needs %s on PATH for kube-proxy and flannel (Debian/Ubuntu: apt install iptables nftables), or add --disable-agent", cmd)
		}
	}
	return nil
}
