// Package supervisor is the server side of the join API (internal/joinapi):
// it checks a node's token and its claim on its name, then signs the
// node's certificates and tells it the cluster settings. The apiserver
// serves these routes on its own port, so a node needs one address only.
package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server/bootstraptoken"
	"github.com/cluster-io/cluster/server/pki"
)

var log = logging.For("join")

// claimGrace is how long a name claimed by a node that has not registered
// yet stays reserved: two machines with the same hostname starting at once
// must not both get it.
const claimGrace = time.Minute

// Server answers the join API.
type Server struct {
	ServerCA, ClientCA       *pki.CA
	ServerCAPEM, ClientCAPEM []byte
	// ServerToken joins anything; AgentToken (Secret empty: none) joins
	// nodes only. Bootstrap tokens are looked up in the cluster.
	ServerToken, AgentToken token.Token
	// Config is handed to every node.
	Config joinapi.Config
	// Client acts for the server (reads tokens, Nodes, node passwords).
	Client kubernetes.Interface
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AddServer adds a joining server's etcd member and returns what it
	// needs (ClusterData, MemberID, InitialCluster); nil when this server
	// does not run embedded etcd.
	AddServer func(ctx context.Context, memberName, peerURL string) (*joinapi.ServerJoinResponse, error)
	// Datastore names this server's datastore, for refusals.
	Datastore string
}

// Routes are the handlers by path, for the apiserver to serve.
func (s *Server) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		joinapi.CACertsPath:    http.HandlerFunc(s.caCerts),
		joinapi.JoinPath:       http.HandlerFunc(s.join),
		joinapi.ServerJoinPath: http.HandlerFunc(s.serverJoin),
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) caCerts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.ServerCAPEM)
}

// refusal is an error with the HTTP status a node acts on: 4xx are final,
// 5xx may pass.
type refusal struct {
	status int
	msg    string
}

func (e *refusal) Error() string { return e.msg }

// Refuse is an error with an HTTP status for the joining side: 4xx are
// final, 5xx may pass (for AddServer).
func Refuse(status int, format string, args ...any) error { return refuse(status, format, args...) }

func refuse(status int, format string, args ...any) error {
	return &refusal{status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req joinapi.Request
	if !decodePost(w, r, "join request", &req) {
		return
	}
	resp, how, err := s.handle(r.Context(), &req)
	if err != nil {
		log.Warnf("refused node %q from %s: %v", req.NodeName, r.RemoteAddr, err)
		writeError(w, err)
		return
	}
	log.Infof("node %s joined from %s with %s", req.NodeName, r.RemoteAddr, how)
	writeJSON(w, resp)
}

// decodePost reads a JSON POST body into req; on failure it has answered.
func decodePost(w http.ResponseWriter, r *http.Request, what string, req any) bool {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return false
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(req); err != nil {
		writeError(w, refuse(http.StatusBadRequest, "%s is not valid JSON: %v", what, err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, resp any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) serverJoin(w http.ResponseWriter, r *http.Request) {
	var req joinapi.ServerJoinRequest
	if !decodePost(w, r, "server join request", &req) {
		return
	}
	resp, err := s.handleServerJoin(r.Context(), &req)
	if err != nil {
		log.Warnf("refused server %q from %s: %v", req.MemberName, r.RemoteAddr, err)
		writeError(w, err)
		return
	}
	log.Infof("server %s (etcd peer %s) joins from %s as etcd learner %x", req.MemberName, req.PeerURL, r.RemoteAddr, resp.MemberID)
	writeJSON(w, resp)
}

// handleServerJoin checks that the request carries the server token (the
// cluster's CA keys go to servers only), then adds the member.
func (s *Server) handleServerJoin(ctx context.Context, req *joinapi.ServerJoinRequest) (*joinapi.ServerJoinResponse, error) {
	tok, err := token.Parse(req.Token)
	if err != nil {
		return nil, refuse(http.StatusUnauthorized, "token: %v", err)
	}
	if _, bootstrap := tok.BootstrapID(); bootstrap || tok.Username == token.NodeUser || !equal(tok.Secret, s.ServerToken.Secret) {
		return nil, refuse(http.StatusUnauthorized, "a server joins only with the server token (<data-dir>/server/token of a server); agent and bootstrap tokens join agents")
	}
	if s.AddServer == nil {
		return nil, refuse(http.StatusBadRequest, "this server's datastore is %s, not embedded etcd: servers on an external SQL database share it instead (start them with the same --datastore-endpoint and --token, without --server)", s.Datastore)
	}
	if errs := validation.IsDNS1123Subdomain(req.MemberName); len(errs) > 0 {
		return nil, refuse(http.StatusBadRequest, "member name %q: %s", req.MemberName, errs[0])
	}
	if u, err := url.Parse(req.PeerURL); err != nil || u.Scheme != "https" || net.ParseIP(u.Hostname()) == nil || u.Port() == "" {
		return nil, refuse(http.StatusBadRequest, "peer URL %q: want https://IP:PORT", req.PeerURL)
	}
	resp, err := s.AddServer(ctx, req.MemberName, req.PeerURL)
	if err != nil {
		return nil, err
	}
	resp.Config = s.Config
	return resp, nil
}

func writeError(w http.ResponseWriter, err error) {
	var rf *refusal
	if !errors.As(err, &rf) {
		rf = &refusal{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rf.status)
	_ = json.NewEncoder(w).Encode(joinapi.Error{Message: rf.msg, Retry: rf.status >= 500})
}

// handle checks the request and signs the node's certificates; it returns
// how the node authenticated, for the log.
func (s *Server) handle(ctx context.Context, req *joinapi.Request) (*joinapi.Response, string, error) {
	how, err := s.authenticate(ctx, req.Token)
	if err != nil {
		return nil, "", err
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return nil, "", refuse(http.StatusBadRequest, "node name %q: %s", req.NodeName, errs[0])
	}
	var ips []net.IP
	for _, a := range req.NodeIPs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, "", refuse(http.StatusBadRequest, "node IP %q is not an IP address", a)
		}
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		return nil, "", refuse(http.StatusBadRequest, "the join request names no node IP")
	}
	if len(req.NodePassword) < 16 {
		return nil, "", refuse(http.StatusBadRequest, "the join request has no node password")
	}
	// Parse every request before claiming the name: a malformed request
	// must leave nothing behind.
	leaves := pki.NodeLeaves(req.NodeName, ips)
	pubs := map[string]any{}
	for _, name := range joinapi.CertNames {
		pub, err := publicKey(req.CSRs[name])
		if err != nil {
			return nil, "", refuse(http.StatusBadRequest, "certificate request %s: %v", name, err)
		}
		pubs[name] = pub
	}
	if err := s.claimName(ctx, req.NodeName, req.NodePassword); err != nil {
		return nil, "", err
	}
	resp := &joinapi.Response{
		ServerCA:     string(s.ServerCAPEM),
		ClientCA:     string(s.ClientCAPEM),
		Certificates: map[string]string{},
		Config:       s.Config,
	}
	for _, name := range joinapi.CertNames {
		leaf := leaves[name]
		ca := s.ClientCA
		if leaf.ServerCA {
			ca = s.ServerCA
		}
		cert, err := pki.Issue(ca, pubs[name], leaf.Spec)
		if err != nil {
			return nil, "", fmt.Errorf("sign %s certificate: %w", name, err)
		}
		resp.Certificates[name] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	return resp, how, nil
}

// authenticate accepts the server token, the agent token or a valid
// bootstrap token.
func (s *Server) authenticate(ctx context.Context, credential string) (string, error) {
	tok, err := token.Parse(credential)
	if err != nil {
		return "", refuse(http.StatusUnauthorized, "token: %v", err)
	}
	if id, ok := tok.BootstrapID(); ok {
		err := bootstraptoken.Validate(ctx, s.Client, tok.Secret, s.now())
		if errors.Is(err, bootstraptoken.ErrInvalid) {
			return "", refuse(http.StatusUnauthorized, "bootstrap token %s is unknown, deleted or expired: create a new one with 'cluster token create' on the server", id)
		}
		if err != nil {
			return "", err
		}
		return "bootstrap token " + id, nil
	}
	agentSecret := s.AgentToken.Secret
	if agentSecret == "" {
		agentSecret = s.ServerToken.Secret
	}
	switch {
	case tok.Username != token.NodeUser && equal(tok.Secret, s.ServerToken.Secret):
		return "the server token", nil
	case tok.Username != token.ServerUser && equal(tok.Secret, agentSecret):
		return "the agent token", nil
	}
	return "", refuse(http.StatusUnauthorized, "the token's secret is not valid for this cluster (check --token against the server's <data-dir>/server/token)")
}

func equal(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func publicKey(csrPEM string) (any, error) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("missing or not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return csr.PublicKey, nil
}

// Node passwords: the first node to join under a name keeps it. A Secret in
// kube-system holds the hash of that node's password (which lives in its
// data dir); another password for the same name is refused while a Node of
// that name exists. Once the Node is deleted, the name is free again.
const (
	passwordKey       = "hash"
	claimedAnnotation = "cluster.io/claimed-at"
	passwordType      = corev1.SecretType("cluster.io/node-password")
)

// PasswordSecretName is the Secret that keeps a node name's claim.
func PasswordSecretName(node string) string {
	name := node + ".node-password.cluster"
	if len(name) > validation.DNS1123SubdomainMaxLength {
		sum := sha256.Sum256([]byte(node))
		name = hex.EncodeToString(sum[:16]) + ".node-password.cluster"
	}
	return name
}

func (s *Server) claimName(ctx context.Context, node, password string) error {
	sum := sha256.Sum256([]byte(password))
	hash := hex.EncodeToString(sum[:])
	secrets := s.Client.CoreV1().Secrets(metav1.NamespaceSystem)
	for attempt := 0; attempt < 5; attempt++ {
		now := s.now().UTC().Format(time.RFC3339)
		sec, err := secrets.Get(ctx, PasswordSecretName(node), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name:        PasswordSecretName(node),
					Annotations: map[string]string{claimedAnnotation: now, "cluster.io/node": node},
				},
				Type: passwordType,
				Data: map[string][]byte{passwordKey: []byte(hash)},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("read node password: %w", err)
		}
		if equal(string(sec.Data[passwordKey]), hash) {
			return nil
		}
		_, err = s.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil {
			return refuse(http.StatusConflict, "node name %q is taken by another node (a different data dir). If that node is gone for good, run 'kubectl delete node %s' and start this one again; otherwise give this one another --node-name", node, node)
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read node %s: %w", node, err)
		}
		if claimed, err := time.Parse(time.RFC3339, sec.Annotations[claimedAnnotation]); err == nil {
			if age := s.now().Sub(claimed); age < claimGrace {
				return refuse(http.StatusServiceUnavailable, "node name %q was claimed %s ago by a node (another data dir) that has not registered yet; if that was this machine before a reinstall, the name is free %s after that claim", node, age.Round(time.Second), claimGrace)
			}
		}
		// The name's node is gone (or never came): the name is free.
		sec.Data = map[string][]byte{passwordKey: []byte(hash)}
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		sec.Annotations[claimedAnnotation] = now
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err == nil {
			log.Infof("node name %s: its earlier node is gone; the name now belongs to the node joining", node)
		}
		return err
	}
	return errors.New("node password: too many concurrent changes; try again")
}
