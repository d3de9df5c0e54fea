package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// NodeFiles are one node's credentials: the kubelet's client and serving
// certificates and kube-proxy's client certificate, plus the CAs a node
// trusts (server CA for the apiserver, client CA for callers of the kubelet).
type NodeFiles struct {
	Dir           string
	ServerCA      string
	ClientCA      string
	KubeletClient Pair // system:node:<name> in system:nodes (Node authorizer)
	KubeletServe  Pair // serves :10250 for logs, exec and port-forward
	KubeProxy     Pair // system:kube-proxy (bound to system:node-proxier)
	Flannel       Pair // system:cluster-flannel (charts/flannel-rbac.yaml)
}

// NodeLayout returns a node's credential file names under dir.
func NodeLayout(dir string) NodeFiles {
	p := func(name string) Pair {
		return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	}
	return NodeFiles{
		Dir:           dir,
		ServerCA:      filepath.Join(dir, "server-ca.crt"),
		ClientCA:      filepath.Join(dir, "client-ca.crt"),
		KubeletClient: p("client-kubelet"),
		KubeletServe:  p("serving-kubelet"),
		KubeProxy:     p("client-kube-proxy"),
		Flannel:       p("client-flannel"),
	}
}

// EnsureNode issues (or keeps) the credentials of node nodeName with
// addresses ips, signed by the server's CAs in f, into dir.
func EnsureNode(f Files, dir, nodeName string, ips []net.IP) (NodeFiles, error) {
	n := NodeLayout(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return n, fmt.Errorf("create %s: %w", dir, err)
	}
	serverCA, err := LoadCA(f.ServerCA)
	if err != nil {
		return n, err
	}
	clientCA, err := LoadCA(f.ClientCA)
	if err != nil {
		return n, err
	}
	serving := SANs{DNSNames: []string{nodeName, "localhost"}, IPs: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)}.dedup()
	leaves := []struct {
		pair Pair
		ca   *CA
		spec LeafSpec
	}{
		{n.KubeletClient, clientCA, LeafSpec{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}, Usage: x509.ExtKeyUsageClientAuth}},
		{n.KubeletServe, serverCA, LeafSpec{CommonName: nodeName, SANs: serving, Usage: x509.ExtKeyUsageServerAuth}},
		{n.KubeProxy, clientCA, LeafSpec{CommonName: "system:kube-proxy", Usage: x509.ExtKeyUsageClientAuth}},
		{n.Flannel, clientCA, LeafSpec{CommonName: "system:cluster-flannel", Usage: x509.ExtKeyUsageClientAuth}},
	}
	for _, l := range leaves {
		if err := EnsureLeaf(l.pair, l.ca, l.spec); err != nil {
			return n, err
		}
	}
	for _, c := range []struct{ from, to string }{{f.ServerCA.Cert, n.ServerCA}, {f.ClientCA.Cert, n.ClientCA}} {
		b, err := os.ReadFile(c.from)
		if err != nil {
			return n, err
		}
		if err := WriteFileAtomic(c.to, b, 0o644); err != nil {
			return n, err
		}
	}
	return n, nil
}
