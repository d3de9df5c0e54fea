package pki

import (
	"net"
	"slices"
	"testing"

	"github.com/cluster-io/cluster/internal/joinapi"
)

func TestNodeLeaves(t *testing.T) {
	ip := net.ParseIP("10.1.2.3")
	leaves := NodeLeaves("edge-1", []net.IP{ip})
	for _, name := range joinapi.CertNames {
		if _, ok := leaves[name]; !ok {
			t.Errorf("no %s certificate", name)
		}
	}
	client := leaves[joinapi.CertKubeletClient]
	if client.ServerCA || client.Spec.CommonName != "system:node:edge-1" || !slices.Equal(client.Spec.Organization, []string{"system:nodes"}) {
		t.Errorf("kubelet client %+v", client)
	}
	serving := leaves[joinapi.CertKubeletServing]
	if !serving.ServerCA || !slices.Contains(serving.Spec.SANs.DNSNames, "edge-1") || !slices.ContainsFunc(serving.Spec.SANs.IPs, ip.Equal) {
		t.Errorf("kubelet serving %+v", serving)
	}
	if leaves[joinapi.CertFlannel].Spec.CommonName != "system:cluster-flannel" || leaves[joinapi.CertKubeProxy].Spec.CommonName != "system:kube-proxy" {
		t.Error("flannel or kube-proxy identity")
	}
}
