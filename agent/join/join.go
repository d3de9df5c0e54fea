// Package join is the node side of the join API (internal/joinapi): it pins
// the server's CA with the token's hash, proves the node's claim on its name
// with a password kept in the data dir, and turns the server's answer into
// the node's credential files. Keys are made here and never leave the node.
package join

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/cluster-io/cluster/internal/fileutil"
	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("join")

// Pair names a certificate and its key on disk.
type Pair struct {
	Cert string
	Key  string
}

// Files are a node's credentials under <data-dir>/agent/tls.
type Files struct {
	Dir           string
	ServerCA      string // verifies the apiserver
	ClientCA      string // verifies the kubelet's callers
	KubeletClient Pair
	KubeletServe  Pair
	KubeProxy     Pair
	Flannel       Pair
}

// Layout returns the credential file names under dir.
func Layout(dir string) Files {
	p := func(name string) Pair {
		return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	}
	return Files{
		Dir:           dir,
		ServerCA:      filepath.Join(dir, "server-ca.crt"),
		ClientCA:      filepath.Join(dir, "client-ca.crt"),
		KubeletClient: p("client-kubelet"),
		KubeletServe:  p("serving-kubelet"),
		KubeProxy:     p("client-kube-proxy"),
		Flannel:       p("client-flannel"),
	}
}

func (f Files) byName() map[string]Pair {
	return map[string]Pair{
		joinapi.CertKubeletClient:  f.KubeletClient,
		joinapi.CertKubeletServing: f.KubeletServe,
		joinapi.CertKubeProxy:      f.KubeProxy,
		joinapi.CertFlannel:        f.Flannel,
	}
}

// Config is one node's join.
type Config struct {
	Server string // https://host:port
	// Fallbacks are more servers (https://host:port) to try, in turn with
	// Server, while Server cannot be reached: the servers an earlier start
	// of this node learned.
	Fallbacks []string
	Token     token.Token
	NodeName  string
	NodeIPs   []net.IP // internal first
	// AgentDir is <data-dir>/agent: credentials go to tls/, the node
	// password to node-password.
	AgentDir string
	// RetryLogEvery bounds how often a waiting join logs (default 30s).
	RetryLogEvery time.Duration
}

// Result is a joined node's credentials and the cluster's settings.
type Result struct {
	Files  Files
	Config joinapi.Config
	Server string // the server that answered
}

// Refused is a refusal that asking again cannot change: a wrong token, a
// CA that does not match the token, a name that another node holds.
type Refused struct{ Reason string }

func (e *Refused) Error() string { return e.Reason }

// Join asks the server for the node's credentials, retrying (with a log
// line saying what it waits for) while the server cannot be reached or
// cannot answer yet. It returns a *Refused when retrying cannot help.
func Join(ctx context.Context, c Config) (*Result, error) {
	if c.Token.CAHash == "" {
		log.Warnf("the token has no CA hash (K10<hash>::…): this node trusts whatever CA %s presents, so anyone on the network path could pose as the server. Use the full token from the server's <data-dir>/server/token or 'cluster token create'", c.Server)
	}
	every := c.RetryLogEvery
	if every == 0 {
		every = 30 * time.Second
	}
	servers := append([]string{c.Server}, c.Fallbacks...)
	res, server, err := retry(ctx, servers, every, func(server string) (*Result, error) {
		try := c
		try.Server = server
		return joinOnce(ctx, try)
	})
	if res != nil {
		res.Server = server
	}
	return res, err
}

// retry calls once with each of servers in turn until it succeeds or is
// refused (*Refused), backing off up to 5 s and saying what it waits for:
// quiet for the first seconds (a server that is starting answers soon),
// then every `every`. It returns the server that answered.
func retry[T any](ctx context.Context, servers []string, every time.Duration, once func(server string) (T, error)) (T, string, error) {
	var zero T
	nextLog := time.Now().Add(2 * time.Second)
	delay := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		server := servers[attempt%len(servers)]
		res, err := once(server)
		var refused *Refused
		if err == nil || errors.As(err, &refused) {
			return res, server, err
		}
		if ctx.Err() != nil {
			return zero, server, ctx.Err()
		}
		if time.Now().After(nextLog) {
			log.Infof("waiting for server %s: %v", server, err)
			nextLog = time.Now().Add(every)
		}
		select {
		case <-ctx.Done():
			return zero, server, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func joinOnce(ctx context.Context, c Config) (*Result, error) {
	caPEM, err := fetchCA(ctx, c.Server, c.Token.CAHash)
	if err != nil {
		return nil, err
	}
	password, err := nodePassword(filepath.Join(c.AgentDir, "node-password"))
	if err != nil {
		return nil, err
	}
	files := Layout(filepath.Join(c.AgentDir, "tls"))
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		return nil, err
	}
	req := joinapi.Request{Token: c.Token.Credential(), NodeName: c.NodeName, NodePassword: password, CSRs: map[string]string{}}
	for _, ip := range c.NodeIPs {
		req.NodeIPs = append(req.NodeIPs, ip.String())
	}
	for name, pair := range files.byName() {
		csr, err := certificateRequest(pair.Key, name)
		if err != nil {
			return nil, &Refused{Reason: fmt.Sprintf("node key %s: %v", pair.Key, err)}
		}
		req.CSRs[name] = csr
	}
	var resp joinapi.Response
	if err := post(ctx, c.Server, joinapi.JoinPath, caPEM, &req, &resp); err != nil {
		return nil, err
	}
	if err := writeFiles(files, &resp); err != nil {
		return nil, &Refused{Reason: err.Error()}
	}
	return &Result{Files: files, Config: resp.Config}, nil
}

// fetchCA reads the server's CA bundle without trusting it yet, and
// accepts it only if its hash is the token's.
func fetchCA(ctx context.Context, server, wantHash string) ([]byte, error) {
	client := &http.Client{
		Timeout: 10 * time.Second,
		// Nothing is trusted yet: what is read here is checked against
		// the token's hash before anything secret is sent.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // pinned by hash below
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+joinapi.CACertsPath, nil)
	if err != nil {
		return nil, &Refused{Reason: fmt.Sprintf("--server %s: %v", server, err)}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", joinapi.CACertsPath, resp.Status, oneLine(body))
	}
	if _, err := certsFromPEM(body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", joinapi.CACertsPath, err)
	}
	if wantHash != "" && token.CAHash(body) != wantHash {
		return nil, &Refused{Reason: fmt.Sprintf("the CA that %s presents (sha256 %s) is not the one the token names (%s): the token belongs to another cluster, or something between here and the server is posing as it", server, token.CAHash(body)[:16]+"…", wantHash[:16]+"…")}
	}
	return body, nil
}

// JoinServer asks server to add a server to its embedded etcd cluster
// (joinapi.ServerJoinPath), pinning its CA with tok's hash. It retries
// while the server cannot answer, like Join.
func JoinServer(ctx context.Context, server string, tok token.Token, memberName, peerURL string) (*joinapi.ServerJoinResponse, error) {
	if tok.CAHash == "" {
		log.Warnf("the token has no CA hash (K10<hash>::…): this server trusts whatever CA %s presents with the cluster's keys. Use the full token from the first server's <data-dir>/server/token", server)
	}
	resp, _, err := retry(ctx, []string{server}, 30*time.Second, func(server string) (*joinapi.ServerJoinResponse, error) {
		return joinServerOnce(ctx, server, tok, memberName, peerURL)
	})
	return resp, err
}

func joinServerOnce(ctx context.Context, server string, tok token.Token, memberName, peerURL string) (*joinapi.ServerJoinResponse, error) {
	caPEM, err := fetchCA(ctx, server, tok.CAHash)
	if err != nil {
		return nil, err
	}
	var resp joinapi.ServerJoinResponse
	req := joinapi.ServerJoinRequest{Token: tok.Credential(), MemberName: memberName, PeerURL: peerURL}
	if err := post(ctx, server, joinapi.ServerJoinPath, caPEM, &req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// post sends a join request over TLS verified by the pinned CA.
func post(ctx context.Context, server, path string, caPEM []byte, in, out any) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("join answer: %w", err)
		}
		return nil
	}
	// Our own refusals carry a joinapi.Error; anything else (the apiserver
	// before the server has set up the join API's access, a proxy) is
	// waited out.
	var e struct {
		joinapi.Error
		Kind string `json:"kind"`
	}
	if json.Unmarshal(data, &e) == nil && e.Kind == "" && e.Message != "" {
		if e.Retry {
			return errors.New(e.Message)
		}
		return &Refused{Reason: "the server refused: " + e.Message}
	}
	return fmt.Errorf("POST %s: %s: %s", path, resp.Status, oneLine(data))
}

// nodePassword returns the node's password, made on first use. It stays in
// the data dir: a node with another data dir is another node.
func nodePassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", &Refused{Reason: fmt.Sprintf("node password: %v", err)}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", &Refused{Reason: fmt.Sprintf("node password: %v", err)}
	}
	if err := fileutil.WriteAtomic(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", &Refused{Reason: fmt.Sprintf("node password: %v", err)}
	}
	return pw, nil
}

// certificateRequest returns a CSR for the key at keyPath, made (0600) if
// it does not exist. The server ignores the CSR's names.
func certificateRequest(keyPath, name string) (string, error) {
	var key *ecdsa.PrivateKey
	if k, err := keyutil.PrivateKeyFromFile(keyPath); err == nil {
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return "", errors.New("not an ECDSA key")
		}
		key = ec
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return "", err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", err
		}
		if err := fileutil.WriteAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return "", err
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// writeFiles keeps the answer: each certificate must belong to its key.
func writeFiles(f Files, resp *joinapi.Response) error {
	for path, data := range map[string]string{f.ServerCA: resp.ServerCA, f.ClientCA: resp.ClientCA} {
		if _, err := certsFromPEM([]byte(data)); err != nil {
			return fmt.Errorf("join answer: CA: %w", err)
		}
		if err := fileutil.WriteAtomic(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	for name, pair := range f.byName() {
		certPEM := resp.Certificates[name]
		if _, err := tls.X509KeyPair([]byte(certPEM), mustRead(pair.Key)); err != nil {
			return fmt.Errorf("join answer: %s certificate does not match its key: %w", name, err)
		}
		if err := fileutil.WriteAtomic(pair.Cert, []byte(certPEM), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func certsFromPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the answer")
	}
	return certs, nil
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
