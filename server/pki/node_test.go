package pki

import (
	"net"
	"path/filepath"
	"slices"
	"testing"
)

func TestEnsureNode(t *testing.T) {
	dir := t.TempDir()
	f, err := Ensure(filepath.Join(dir, "server"), sansFor(t))
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP("10.1.2.3")
	n, err := EnsureNode(f, filepath.Join(dir, "node"), "edge-1", []net.IP{ip})
	if err != nil {
		t.Fatal(err)
	}
	client := readCert(t, n.KubeletClient.Cert)
	if client.Subject.CommonName != "system:node:edge-1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("kubelet client subject %v", client.Subject)
	}
	serving := readCert(t, n.KubeletServe.Cert)
	if !slices.Contains(serving.DNSNames, "edge-1") || !slices.ContainsFunc(serving.IPAddresses, ip.Equal) {
		t.Errorf("kubelet serving SANs %v %v", serving.DNSNames, serving.IPAddresses)
	}
	if err := serving.CheckSignatureFrom(readCert(t, f.ServerCA.Cert)); err != nil {
		t.Errorf("kubelet serving cert not from the server CA: %v", err)
	}
	if readCert(t, n.Flannel.Cert).Subject.CommonName != "system:cluster-flannel" {
		t.Error("flannel identity")
	}
	// Reused on the next start.
	again, err := EnsureNode(f, filepath.Join(dir, "node"), "edge-1", []net.IP{ip})
	if err != nil {
		t.Fatal(err)
	}
	if !readCert(t, again.KubeletClient.Cert).Equal(client) {
		t.Error("kubelet client certificate re-issued on restart")
	}
}
