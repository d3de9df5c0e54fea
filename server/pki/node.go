package pki

import (
	"crypto/x509"
	"net"

	"github.com/cluster-io/cluster/internal/joinapi"
)

// NodeLeaf is one certificate a node gets: which CA signs it, and its names.
type NodeLeaf struct {
	ServerCA bool // signed by the server CA (serving), else the client CA
	Spec     LeafSpec
}

// NodeLeaves are the certificates of node nodeName with addresses ips, by
// joinapi certificate name. The identities decide what a node may do:
// system:node:<name> in system:nodes is confined by the Node authorizer and
// NodeRestriction; kube-proxy is bound to system:node-proxier; flannel's
// identity by charts/flannel-rbac.yaml (a node may read only its own Node).
func NodeLeaves(nodeName string, ips []net.IP) map[string]NodeLeaf {
	serving := SANs{DNSNames: []string{nodeName, "localhost"}, IPs: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)}.dedup()
	return map[string]NodeLeaf{
		joinapi.CertKubeletClient:  {Spec: LeafSpec{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}, Usage: x509.ExtKeyUsageClientAuth}},
		joinapi.CertKubeletServing: {ServerCA: true, Spec: LeafSpec{CommonName: nodeName, SANs: serving, Usage: x509.ExtKeyUsageServerAuth}},
		joinapi.CertKubeProxy:      {Spec: LeafSpec{CommonName: "system:kube-proxy", Usage: x509.ExtKeyUsageClientAuth}},
		joinapi.CertFlannel:        {Spec: LeafSpec{CommonName: "system:cluster-flannel", Usage: x509.ExtKeyUsageClientAuth}},
	}
}
