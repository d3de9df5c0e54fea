// Package pki creates and keeps the server's certificate authorities and
// certificates under <data-dir>/server/tls.
//
// Everything is generated once and reused on restart. A leaf certificate is
// re-issued (by the same CA) only when it no longer fits: its SANs changed,
// it expires within renewBefore, or it was not signed by the current CA.
// A CA is never replaced: a CA certificate without its key is an error.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/cluster-io/cluster/internal/fileutil"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	renewBefore  = 90 * 24 * time.Hour
)

// SANs are the subject alternative names of a serving certificate.
type SANs struct {
	DNSNames []string
	IPs      []net.IP
}

// Pair names a certificate and its key on disk.
type Pair struct {
	Cert string
	Key  string
}

// Files is every file the control plane needs, as absolute paths.
type Files struct {
	Dir string

	ServerCA        Pair // signs serving certificates (apiserver, later kubelets)
	ClientCA        Pair // signs client certificates
	RequestHeaderCA Pair // signs the front proxy client certificate

	ServiceAccountKey string // signs and verifies service account tokens

	APIServerServing Pair
	Admin            Pair // system:admin in system:masters
	Scheduler        Pair // system:kube-scheduler
	ControllerMgr    Pair // system:kube-controller-manager
	APIServerKubelet Pair // apiserver → kubelet client
	AuthProxy        Pair // apiserver → aggregated APIs (request header client)
	MetricsServer    Pair // system:metrics-server: reads the API, scrapes kubelets
	MetricsServing   Pair // metrics-server's serving certificate (the APIService trusts the server CA)
	// The controller-manager's and scheduler's loopback serving
	// certificates: without them each makes a self-signed RSA key at every
	// start (~0.2–0.6 s of CPU each while the control plane starts).
	ControllerMgrServing Pair
	SchedulerServing     Pair

	// Embedded etcd (EnsureEtcd): its own CA, so that no other client
	// certificate of the cluster opens the datastore.
	EtcdCA     Pair
	EtcdServer Pair // etcd's client-facing serving certificate
	EtcdPeer   Pair // member ↔ member, both directions
	EtcdClient Pair // the apiserver's and our own tools' client certificate
}

// Layout returns the file names under dir without touching the disk.
func Layout(dir string) Files {
	p := func(name string) Pair {
		return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	}
	return Files{
		Dir:                  dir,
		ServerCA:             p("server-ca"),
		ClientCA:             p("client-ca"),
		RequestHeaderCA:      p("request-header-ca"),
		ServiceAccountKey:    filepath.Join(dir, "service.key"),
		APIServerServing:     p("serving-kube-apiserver"),
		Admin:                p("client-admin"),
		Scheduler:            p("client-kube-scheduler"),
		ControllerMgr:        p("client-kube-controller-manager"),
		APIServerKubelet:     p("client-kube-apiserver"),
		AuthProxy:            p("client-auth-proxy"),
		MetricsServer:        p("client-metrics-server"),
		MetricsServing:       p("serving-metrics-server"),
		ControllerMgrServing: p("serving-kube-controller-manager"),
		SchedulerServing:     p("serving-kube-scheduler"),
		EtcdCA:               p("etcd/ca"),
		EtcdServer:           p("etcd/server"),
		EtcdPeer:             p("etcd/peer"),
		EtcdClient:           p("etcd/client"),
	}
}

// EnsureEtcd creates what is missing or stale of the embedded etcd's CA and
// certificates, for a member on nodeIP.
func EnsureEtcd(f Files, nodeIP net.IP) error {
	if err := os.MkdirAll(filepath.Dir(f.EtcdCA.Cert), 0o700); err != nil {
		return err
	}
	ca, err := ensureCA(f.EtcdCA, "cluster-etcd-ca")
	if err != nil {
		return err
	}
	sans := SANs{DNSNames: []string{"localhost"}, IPs: []net.IP{nodeIP, net.ParseIP("127.0.0.1")}}
	for _, l := range []struct {
		pair Pair
		spec LeafSpec
	}{
		{f.EtcdServer, LeafSpec{CommonName: "etcd-server", SANs: sans, Usage: x509.ExtKeyUsageServerAuth}},
		{f.EtcdPeer, LeafSpec{CommonName: "etcd-peer", SANs: sans, Usage: x509.ExtKeyUsageServerAuth, ExtraUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{f.EtcdClient, LeafSpec{CommonName: "etcd-client", Usage: x509.ExtKeyUsageClientAuth}},
	} {
		if err := EnsureLeaf(l.pair, ca, l.spec); err != nil {
			return err
		}
	}
	return nil
}

// Ensure creates whatever is missing or stale under dir and returns the
// layout. servingSANs are the apiserver serving certificate's names.
func Ensure(dir string, servingSANs SANs) (Files, error) {
	f := Layout(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("create %s: %w", dir, err)
	}
	serverCA, err := ensureCA(f.ServerCA, "cluster-server-ca")
	if err != nil {
		return f, err
	}
	clientCA, err := ensureCA(f.ClientCA, "cluster-client-ca")
	if err != nil {
		return f, err
	}
	requestHeaderCA, err := ensureCA(f.RequestHeaderCA, "cluster-request-header-ca")
	if err != nil {
		return f, err
	}
	if _, err := ensureKey(f.ServiceAccountKey); err != nil {
		return f, err
	}

	loopback := SANs{DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	leaves := []struct {
		pair Pair
		ca   *CA
		spec LeafSpec
	}{
		{f.APIServerServing, serverCA, LeafSpec{CommonName: "kube-apiserver", SANs: servingSANs, Usage: x509.ExtKeyUsageServerAuth}},
		{f.Admin, clientCA, LeafSpec{CommonName: "system:admin", Organization: []string{"system:masters"}, Usage: x509.ExtKeyUsageClientAuth}},
		{f.Scheduler, clientCA, LeafSpec{CommonName: "system:kube-scheduler", Usage: x509.ExtKeyUsageClientAuth}},
		{f.ControllerMgr, clientCA, LeafSpec{CommonName: "system:kube-controller-manager", Usage: x509.ExtKeyUsageClientAuth}},
		{f.APIServerKubelet, clientCA, LeafSpec{CommonName: "system:kube-apiserver", Organization: []string{"system:masters"}, Usage: x509.ExtKeyUsageClientAuth}},
		{f.AuthProxy, requestHeaderCA, LeafSpec{CommonName: "system:auth-proxy", Usage: x509.ExtKeyUsageClientAuth}},
		{f.MetricsServer, clientCA, LeafSpec{CommonName: "system:metrics-server", Usage: x509.ExtKeyUsageClientAuth}},
		{f.MetricsServing, serverCA, LeafSpec{CommonName: "metrics-server", Usage: x509.ExtKeyUsageServerAuth,
			SANs: SANs{DNSNames: []string{"metrics-server.kube-system.svc", "metrics-server.kube-system", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}}},
		{f.ControllerMgrServing, serverCA, LeafSpec{CommonName: "kube-controller-manager", Usage: x509.ExtKeyUsageServerAuth, SANs: loopback}},
		{f.SchedulerServing, serverCA, LeafSpec{CommonName: "kube-scheduler", Usage: x509.ExtKeyUsageServerAuth, SANs: loopback}},
	}
	for _, l := range leaves {
		if err := EnsureLeaf(l.pair, l.ca, l.spec); err != nil {
			return f, err
		}
	}
	return f, nil
}

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// LoadCA reads a CA pair from disk.
func LoadCA(p Pair) (*CA, error) {
	certs, err := certutil.CertsFromFile(p.Cert)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate %s: %w", p.Cert, err)
	}
	key, err := keyutil.PrivateKeyFromFile(p.Key)
	if err != nil {
		return nil, fmt.Errorf("read CA key %s: %w", p.Key, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key %s is not a signing key", p.Key)
	}
	return &CA{Cert: certs[0], Key: signer}, nil
}

func ensureCA(p Pair, name string) (*CA, error) {
	certExists, keyExists := exists(p.Cert), exists(p.Key)
	switch {
	case certExists && keyExists:
		return LoadCA(p)
	case certExists != keyExists:
		return nil, fmt.Errorf("incomplete CA: %s and %s must both exist; restore the missing file from a backup (refusing to replace a CA)", p.Cert, p.Key)
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: fmt.Sprintf("%s@%d", name, time.Now().Unix())}, key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", name, err)
	}
	// NewSelfSignedCACert's validity is 10 years, like ours.
	if err := writePair(p, cert, key); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LeafSpec describes a certificate signed by a CA.
type LeafSpec struct {
	CommonName   string
	Organization []string
	SANs         SANs
	Usage        x509.ExtKeyUsage
	ExtraUsages  []x509.ExtKeyUsage
}

// EnsureLeaf keeps an existing certificate that still fits spec and ca, and
// issues a new one (reusing the existing key, if any) otherwise.
func EnsureLeaf(p Pair, ca *CA, spec LeafSpec) error {
	var key crypto.Signer
	if exists(p.Key) {
		k, err := keyutil.PrivateKeyFromFile(p.Key)
		if err != nil {
			return fmt.Errorf("read key %s: %w", p.Key, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return fmt.Errorf("key %s is not a signing key", p.Key)
		}
		key = s
		if exists(p.Cert) {
			certs, err := certutil.CertsFromFile(p.Cert)
			if err == nil && fits(certs[0], ca, spec, key) {
				return nil
			}
		}
	} else {
		k, err := newKey()
		if err != nil {
			return err
		}
		key = k
	}
	cert, err := Issue(ca, key.Public(), spec)
	if err != nil {
		return fmt.Errorf("issue certificate %s: %w", p.Cert, err)
	}
	return writePair(p, cert, key)
}

// fits reports whether cert still serves spec.
func fits(cert *x509.Certificate, ca *CA, spec LeafSpec, key crypto.Signer) bool {
	if cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	if cert.Subject.CommonName != spec.CommonName || !slices.Equal(cert.Subject.Organization, spec.Organization) {
		return false
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return false
	}
	return sameStrings(cert.DNSNames, spec.SANs.DNSNames) && sameIPs(cert.IPAddresses, spec.SANs.IPs)
}

// Issue signs a certificate for the public key pub, with the names spec gives.
func Issue(ca *CA, pub crypto.PublicKey, spec LeafSpec) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).SetInt64(math.MaxInt64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		DNSNames:     spec.SANs.DNSNames,
		IPAddresses:  spec.SANs.IPs,
		NotBefore:    now.Add(-time.Hour), // tolerate small clock skew between nodes
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  append([]x509.ExtKeyUsage{spec.Usage}, spec.ExtraUsages...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func ensureKey(path string) (crypto.Signer, error) {
	if exists(path) {
		k, err := keyutil.PrivateKeyFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key %s is not a signing key", path)
		}
		return s, nil
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	pemKey, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	return key, fileutil.WriteAtomic(path, pemKey, 0o600)
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func writePair(p Pair, cert *x509.Certificate, key crypto.Signer) error {
	pemKey, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", p.Key, err)
	}
	pemCert, err := certutil.EncodeCertificates(cert)
	if err != nil {
		return fmt.Errorf("encode certificate %s: %w", p.Cert, err)
	}
	if err := fileutil.WriteAtomic(p.Key, pemKey, 0o600); err != nil {
		return err
	}
	return fileutil.WriteAtomic(p.Cert, pemCert, 0o644)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameIPs(a, b []net.IP) bool {
	str := func(ips []net.IP) []string {
		out := make([]string, len(ips))
		for i, ip := range ips {
			out[i] = ip.String()
		}
		return out
	}
	return sameStrings(str(a), str(b))
}
