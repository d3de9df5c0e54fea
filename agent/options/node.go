// Package options defines the node's settings (k3s's agent flags), shared by
// `cluster agent` and `cluster server` (which runs a node unless
// --disable-agent), and `cluster agent`'s own.
package options

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Node holds the options of the node side.
type Node struct {
	NodeName       string
	NodeIP         string
	NodeExternalIP string
	NodeLabels     []string
	NodeTaints     []string
	KubeletArgs    []string
	KubeProxyArgs  []string
	ResolvConf     string
}

// AddFlags registers the node flags.
func (n *Node) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&n.NodeName, "node-name", "", "Node name (default: hostname)")
	fs.StringVar(&n.NodeIP, "node-ip", "", "IPv4 address to advertise for the node (default: address of the default-route interface)")
	fs.StringVar(&n.NodeExternalIP, "node-external-ip", "", "IPv4 external address to advertise for the node")
	fs.StringArrayVar(&n.NodeLabels, "node-label", nil, "Label to register the node with, key=value (repeatable)")
	fs.StringArrayVar(&n.NodeTaints, "node-taint", nil, "Taint to register the node with, key=value:Effect (repeatable)")
	fs.StringVar(&n.ResolvConf, "resolv-conf", "", "resolv.conf for the kubelet: the DNS servers of pods with dnsPolicy Default, and so of CoreDNS for names outside the cluster (default: the host's, unless it names a loopback resolver)")
	fs.StringArrayVar(&n.KubeletArgs, "kubelet-arg", nil, "Extra flag for kubelet, as name=value (repeatable)")
	fs.StringArrayVar(&n.KubeProxyArgs, "kube-proxy-arg", nil, "Extra flag for kube-proxy, as name=value (repeatable; proxy-mode=nftables selects nftables)")
}

// nodeNameRE is a DNS subdomain (RFC 1123), what Kubernetes requires of node names.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

var taintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

// Validate checks the node options.
func (n *Node) Validate() error {
	if n.NodeName != "" && (len(n.NodeName) > 253 || !nodeNameRE.MatchString(n.NodeName)) {
		return fmt.Errorf("--node-name %q must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)", n.NodeName)
	}
	for flag, v := range map[string]string{"--node-ip": n.NodeIP, "--node-external-ip": n.NodeExternalIP} {
		if v == "" {
			continue
		}
		ip := net.ParseIP(v)
		if ip == nil || ip.To4() == nil {
			return fmt.Errorf("%s %q is not an IPv4 address", flag, v)
		}
		if ip.IsUnspecified() || ip.IsLoopback() {
			return fmt.Errorf("%s %s must be an address other nodes can reach, not loopback or unspecified", flag, v)
		}
	}
	for _, l := range n.NodeLabels {
		key, value, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--node-label %q: want key=value", l)
		}
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return fmt.Errorf("--node-label %q: key: %s", l, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
			return fmt.Errorf("--node-label %q: value: %s", l, strings.Join(errs, "; "))
		}
	}
	for _, t := range n.NodeTaints {
		kv, effect, ok := strings.Cut(t, ":")
		key, _, _ := strings.Cut(kv, "=")
		if !ok || !slices.Contains(taintEffects, effect) {
			return fmt.Errorf("--node-taint %q: want key=value:Effect with Effect one of %s", t, strings.Join(taintEffects, ", "))
		}
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return fmt.Errorf("--node-taint %q: key: %s", t, strings.Join(errs, "; "))
		}
	}
	if n.ResolvConf != "" {
		if st, err := os.Stat(n.ResolvConf); err != nil || st.IsDir() {
			return fmt.Errorf("--resolv-conf %q: not a readable file", n.ResolvConf)
		}
	}
	for flag, args := range map[string][]string{"--kubelet-arg": n.KubeletArgs, "--kube-proxy-arg": n.KubeProxyArgs} {
		for _, a := range args {
			if strings.TrimLeft(a, "-") == "" || strings.HasPrefix(strings.TrimLeft(a, "-"), "=") {
				return fmt.Errorf("%s %q: want name=value", flag, a)
			}
		}
	}
	return nil
}
