package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	certutil "k8s.io/client-go/util/cert"
)

func sansFor(t *testing.T, extra ...string) SANs {
	t.Helper()
	s, err := APIServerSANs([]net.IP{net.ParseIP("192.0.2.2")}, "10.43.0.0/16", "cluster.local", extra)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.CertsFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestEnsureCreatesEverythingWithModes(t *testing.T) {
	dir := t.TempDir()
	f, err := Ensure(dir, sansFor(t))
	if err != nil {
		t.Fatal(err)
	}
	pairs := []Pair{f.ServerCA, f.ClientCA, f.RequestHeaderCA, f.APIServerServing, f.Admin, f.Scheduler, f.ControllerMgr, f.APIServerKubelet, f.AuthProxy, f.MetricsServing, f.ControllerMgrServing, f.SchedulerServing}
	for _, p := range pairs {
		for path, want := range map[string]os.FileMode{p.Key: 0o600, p.Cert: 0o644} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatalf("missing %s: %v", path, err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s mode %o, want %o", path, st.Mode().Perm(), want)
			}
		}
	}
	st, err := os.Stat(f.ServiceAccountKey)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("service account key: %v mode %v", err, st)
	}

	serverCA, clientCA := readCert(t, f.ServerCA.Cert), readCert(t, f.ClientCA.Cert)
	if !serverCA.IsCA || !clientCA.IsCA {
		t.Error("CA certificates are not CAs")
	}
	serving := readCert(t, f.APIServerServing.Cert)
	if err := serving.CheckSignatureFrom(serverCA); err != nil {
		t.Errorf("serving cert not signed by server CA: %v", err)
	}
	admin := readCert(t, f.Admin.Cert)
	if err := admin.CheckSignatureFrom(clientCA); err != nil {
		t.Errorf("admin cert not signed by client CA: %v", err)
	}
	if admin.Subject.CommonName != "system:admin" || !slices.Equal(admin.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin subject = %v", admin.Subject)
	}
	if !slices.Contains(admin.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(serving.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Error("wrong extended key usages")
	}
	// The controller-manager and the scheduler serve on loopback with
	// certificates a client trusting the server CA accepts.
	roots := x509.NewCertPool()
	roots.AddCert(serverCA)
	for _, p := range []Pair{f.ControllerMgrServing, f.SchedulerServing} {
		for _, name := range []string{"127.0.0.1", "localhost"} {
			if _, err := readCert(t, p.Cert).Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s for %s: %v", filepath.Base(p.Cert), name, err)
			}
		}
	}
}

func TestEnsureReusesOnRestart(t *testing.T) {
	dir := t.TempDir()
	f, err := Ensure(dir, sansFor(t))
	if err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, p := range []string{f.ServerCA.Cert, f.ServerCA.Key, f.ClientCA.Cert, f.APIServerServing.Cert, f.Admin.Cert, f.ServiceAccountKey} {
		before[p], _ = os.ReadFile(p)
	}
	if _, err := Ensure(dir, sansFor(t)); err != nil {
		t.Fatal(err)
	}
	for p, b := range before {
		after, _ := os.ReadFile(p)
		if !bytes.Equal(b, after) {
			t.Errorf("%s changed on restart", filepath.Base(p))
		}
	}

	// A new --tls-san re-issues only the serving certificate, by the same CA and key.
	if _, err := Ensure(dir, sansFor(t, "api.example.com", "203.0.113.7")); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(f.ServerCA.Cert); !bytes.Equal(after, before[f.ServerCA.Cert]) {
		t.Error("server CA changed when a SAN was added")
	}
	serving := readCert(t, f.APIServerServing.Cert)
	if !slices.Contains(serving.DNSNames, "api.example.com") || !slices.ContainsFunc(serving.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("203.0.113.7")) }) {
		t.Errorf("new SANs missing: %v %v", serving.DNSNames, serving.IPAddresses)
	}
	if err := serving.CheckSignatureFrom(readCert(t, f.ServerCA.Cert)); err != nil {
		t.Error(err)
	}
}

func TestIncompleteCAIsRefused(t *testing.T) {
	dir := t.TempDir()
	f, err := Ensure(dir, sansFor(t))
	if err != nil {
		t.Fatal(err)
	}
	certBefore, _ := os.ReadFile(f.ServerCA.Cert)
	if err := os.Remove(f.ServerCA.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, sansFor(t)); err == nil {
		t.Fatal("Ensure accepted a CA certificate without its key")
	}
	if after, _ := os.ReadFile(f.ServerCA.Cert); !bytes.Equal(after, certBefore) {
		t.Error("CA certificate was replaced")
	}
}

func TestAPIServerSANs(t *testing.T) {
	s := sansFor(t, "my.host", "10.0.0.9", "my.host")
	for _, want := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "my.host"} {
		if !slices.Contains(s.DNSNames, want) {
			t.Errorf("DNS SAN %q missing from %v", want, s.DNSNames)
		}
	}
	var ips []string
	for _, ip := range s.IPs {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"127.0.0.1", "10.43.0.1", "192.0.2.2", "10.0.0.9"} {
		if !slices.Contains(ips, want) {
			t.Errorf("IP SAN %s missing from %v", want, ips)
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(s.DNSNames), func(d string) bool { return d != "my.host" })); n != 1 {
		t.Errorf("duplicate SAN kept %d times", n)
	}
}

func TestFirstServiceIP(t *testing.T) {
	for cidr, want := range map[string]string{"10.43.0.0/16": "10.43.0.1", "192.168.10.0/24": "192.168.10.1"} {
		_, n, _ := net.ParseCIDR(cidr)
		ip, err := FirstServiceIP(n)
		if err != nil || ip.String() != want {
			t.Errorf("FirstServiceIP(%s) = %v, %v; want %s", cidr, ip, err, want)
		}
	}
	_, n, _ := net.ParseCIDR("10.0.0.0/32")
	if _, err := FirstServiceIP(n); err == nil {
		t.Error("a /32 has no usable service IP")
	}
}
