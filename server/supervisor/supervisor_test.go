package supervisor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/server/bootstraptoken"
	"github.com/cluster-io/cluster/server/pki"
)

type fixture struct {
	s     *Server
	now   time.Time
	token string // a valid bootstrap token
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	files, err := pki.Ensure(dir, pki.SANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	serverCA, _ := pki.LoadCA(files.ServerCA)
	clientCA, _ := pki.LoadCA(files.ClientCA)
	serverPEM, _ := os.ReadFile(files.ServerCA.Cert)
	clientPEM, _ := os.ReadFile(files.ClientCA.Cert)
	f := &fixture{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	client := fake.NewClientset()
	tok, _, err := bootstraptoken.Create(context.Background(), client, time.Hour, "test", f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.token = tok
	f.s = &Server{
		ServerCA: serverCA, ClientCA: clientCA, ServerCAPEM: serverPEM, ClientCAPEM: clientPEM,
		ServerToken: token.Token{Username: token.ServerUser, Secret: "server-secret"},
		AgentToken:  token.Token{Username: token.NodeUser, Secret: "agent-secret"},
		Config:      joinapi.Config{ClusterCIDR: "10.42.0.0/16", FlannelBackend: "vxlan"},
		Client:      client,
		Now:         func() time.Time { return f.now },
	}
	return f
}

func csrs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range joinapi.CertNames {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:masters-wannabe", Organization: []string{"system:masters"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	return out
}

func (f *fixture) join(t *testing.T, req joinapi.Request) (int, joinapi.Response, joinapi.Error) {
	t.Helper()
	body, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	f.s.Routes()[joinapi.JoinPath].ServeHTTP(rec, httptest.NewRequest(http.MethodPost, joinapi.JoinPath, bytes.NewReader(body)))
	var resp joinapi.Response
	var e joinapi.Error
	if rec.Code == http.StatusOK {
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
	} else {
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
	}
	return rec.Code, resp, e
}

func request(t *testing.T, tok, name, password string) joinapi.Request {
	return joinapi.Request{Token: tok, NodeName: name, NodePassword: password, NodeIPs: []string{"10.0.0.5"}, CSRs: csrs(t)}
}

const pw1, pw2 = "0123456789abcdef0123", "fedcba9876543210fedc"

func TestTokens(t *testing.T) {
	f := newFixture(t)
	client := f.s.Client
	expired, _, _ := bootstraptoken.Create(context.Background(), client, time.Minute, "", f.now.Add(-2*time.Minute))
	deleted, _, _ := bootstraptoken.Create(context.Background(), client, time.Hour, "", f.now)
	if err := bootstraptoken.Delete(context.Background(), client, deleted); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		want        int
	}{
		{"server token", "server:server-secret", http.StatusOK},
		{"bare server secret", "server-secret", http.StatusOK},
		{"agent token", "node:agent-secret", http.StatusOK},
		{"bare agent secret", "agent-secret", http.StatusOK},
		{"bootstrap token", f.token, http.StatusOK},
		{"agent secret as server user", "server:agent-secret", http.StatusUnauthorized},
		{"wrong secret", "server:nope", http.StatusUnauthorized},
		{"expired bootstrap token", expired, http.StatusUnauthorized},
		{"deleted bootstrap token", deleted, http.StatusUnauthorized},
		{"bootstrap id with another secret", f.token[:7] + "0000000000000000", http.StatusUnauthorized},
		{"empty", "", http.StatusUnauthorized},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "node-" + string(rune('a'+i))
			code, _, e := f.join(t, request(t, tt.token, name, pw1))
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, e.Message, tt.want)
			}
			if code != http.StatusOK {
				if e.Retry || e.Message == "" {
					t.Errorf("refusal %+v: want a final one with a message", e)
				}
				if _, err := client.CoreV1().Secrets("kube-system").Get(context.Background(), PasswordSecretName(name), metav1.GetOptions{}); err == nil {
					t.Error("a refused node claimed its name")
				}
			}
		})
	}
}

func TestCertificates(t *testing.T) {
	f := newFixture(t)
	code, resp, e := f.join(t, request(t, "server:server-secret", "edge-1", pw1))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, e.Message)
	}
	if resp.Config.ClusterCIDR != "10.42.0.0/16" || resp.ServerCA == "" || resp.ClientCA == "" {
		t.Errorf("response config/CAs: %+v", resp.Config)
	}
	parse := func(name string) *x509.Certificate {
		block, _ := pem.Decode([]byte(resp.Certificates[name]))
		if block == nil {
			t.Fatalf("no %s certificate", name)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The server names the certificates, whatever the requests said.
	client := parse(joinapi.CertKubeletClient)
	if client.Subject.CommonName != "system:node:edge-1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("kubelet client subject %v", client.Subject)
	}
	if err := client.CheckSignatureFrom(f.s.ClientCA.Cert); err != nil {
		t.Errorf("kubelet client not signed by the client CA: %v", err)
	}
	serving := parse(joinapi.CertKubeletServing)
	if !slices.Contains(serving.DNSNames, "edge-1") || !slices.ContainsFunc(serving.IPAddresses, net.ParseIP("10.0.0.5").Equal) {
		t.Errorf("kubelet serving SANs %v %v", serving.DNSNames, serving.IPAddresses)
	}
	if err := serving.CheckSignatureFrom(f.s.ServerCA.Cert); err != nil {
		t.Errorf("kubelet serving not signed by the server CA: %v", err)
	}
	if parse(joinapi.CertKubeProxy).Subject.CommonName != "system:kube-proxy" || parse(joinapi.CertFlannel).Subject.CommonName != "system:cluster-flannel" {
		t.Error("kube-proxy or flannel identity")
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	tampered := request(t, "server:server-secret", "edge-1", pw1)
	csr := tampered.CSRs[joinapi.CertKubeProxy]
	i := strings.Index(csr, "\n") + 20
	tampered.CSRs[joinapi.CertKubeProxy] = csr[:i] + string(rune(csr[i]^1)) + csr[i+1:]
	tests := map[string]joinapi.Request{
		"bad node name": request(t, "server:server-secret", "Edge_1", pw1),
		"no password":   request(t, "server:server-secret", "edge-1", ""),
		"bad ip":        {Token: "server:server-secret", NodeName: "edge-1", NodePassword: pw1, NodeIPs: []string{"x"}, CSRs: csrs(t)},
		"missing csr":   {Token: "server:server-secret", NodeName: "edge-1", NodePassword: pw1, NodeIPs: []string{"10.0.0.5"}},
		"tampered csr":  tampered,
		"no ip":         {Token: "server:server-secret", NodeName: "edge-1", NodePassword: pw1, CSRs: csrs(t)},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			if code, _, e := f.join(t, req); code != http.StatusBadRequest {
				t.Errorf("status %d (%s), want 400", code, e.Message)
			}
		})
	}
	if _, err := f.s.Client.CoreV1().Secrets("kube-system").Get(context.Background(), PasswordSecretName("edge-1"), metav1.GetOptions{}); err == nil {
		t.Error("a bad request claimed the node name")
	}
}

func TestNodeNameClaims(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	join := func(password string) (int, string) {
		code, _, e := f.join(t, request(t, "server:server-secret", "edge-1", password))
		return code, e.Message
	}
	if code, msg := join(pw1); code != http.StatusOK {
		t.Fatalf("first join: %d %s", code, msg)
	}
	if code, msg := join(pw1); code != http.StatusOK {
		t.Fatalf("the same node again: %d %s", code, msg)
	}
	// Another node asks for the name before the first one registered it.
	if code, msg := join(pw2); code != http.StatusServiceUnavailable || !strings.Contains(msg, "has not registered yet") {
		t.Errorf("name claimed moments ago: %d %s, want 503", code, msg)
	}
	// Once a Node of that name exists, the name is taken for good.
	if _, err := f.s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Hour)
	code, msg := join(pw2)
	if code != http.StatusConflict || !strings.Contains(msg, "kubectl delete node edge-1") || !strings.Contains(msg, "--node-name") {
		t.Errorf("taken name: %d %s, want 409 saying how to recover", code, msg)
	}
	// The node object deleted: a reinstalled machine gets the name.
	if err := f.s.Client.CoreV1().Nodes().Delete(ctx, "edge-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, msg := join(pw2); code != http.StatusOK {
		t.Fatalf("name of a deleted node: %d %s", code, msg)
	}
	if code, _ := join(pw1); code == http.StatusOK {
		t.Error("the old password still works after the name changed hands")
	}
}

func TestCACerts(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	f.s.Routes()[joinapi.CACertsPath].ServeHTTP(rec, httptest.NewRequest(http.MethodGet, joinapi.CACertsPath, nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), f.s.ServerCAPEM) {
		t.Errorf("GET /cacerts: %d", rec.Code)
	}
}

func TestServerJoin(t *testing.T) {
	f := newFixture(t)
	var added []string
	serverJoin := func(req joinapi.ServerJoinRequest) (int, joinapi.ServerJoinResponse, joinapi.Error) {
		t.Helper()
		body, _ := json.Marshal(req)
		rec := httptest.NewRecorder()
		f.s.Routes()[joinapi.ServerJoinPath].ServeHTTP(rec, httptest.NewRequest(http.MethodPost, joinapi.ServerJoinPath, bytes.NewReader(body)))
		var resp joinapi.ServerJoinResponse
		var e joinapi.Error
		if rec.Code == http.StatusOK {
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		} else {
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
		}
		return rec.Code, resp, e
	}
	req := func(tok string) joinapi.ServerJoinRequest {
		return joinapi.ServerJoinRequest{Token: tok, MemberName: "s2-0a1b2c3d", PeerURL: "https://10.0.0.6:2380"}
	}

	// Without embedded etcd there is nothing to join.
	f.s.Datastore = "sqlite"
	if code, _, e := serverJoin(req("server:server-secret")); code != http.StatusBadRequest || !strings.Contains(e.Message, "sqlite") {
		t.Fatalf("no etcd: %d %q", code, e.Message)
	}

	f.s.AddServer = func(_ context.Context, name, peer string) (*joinapi.ServerJoinResponse, error) {
		added = append(added, name+"="+peer)
		return &joinapi.ServerJoinResponse{ClusterData: []byte("sealed"), MemberID: 7, InitialCluster: "s1=https://10.0.0.5:2380," + name + "=" + peer}, nil
	}
	tests := []struct {
		name string
		req  joinapi.ServerJoinRequest
		want int
	}{
		{"agent token", req("node:agent-secret"), http.StatusUnauthorized},
		{"bare agent secret", req("agent-secret"), http.StatusUnauthorized},
		{"bootstrap token", req(f.token), http.StatusUnauthorized},
		{"wrong secret", req("server:nope"), http.StatusUnauthorized},
		{"bad member name", joinapi.ServerJoinRequest{Token: "server-secret", MemberName: "S2_x", PeerURL: "https://10.0.0.6:2380"}, http.StatusBadRequest},
		{"peer URL not https", joinapi.ServerJoinRequest{Token: "server-secret", MemberName: "s2", PeerURL: "http://10.0.0.6:2380"}, http.StatusBadRequest},
		{"peer URL without IP", joinapi.ServerJoinRequest{Token: "server-secret", MemberName: "s2", PeerURL: "https://host:2380"}, http.StatusBadRequest},
		{"server token", req("K10" + strings.Repeat("0", 64) + "::server:server-secret"), http.StatusOK},
		{"bare server secret", req("server-secret"), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(added)
			code, resp, e := serverJoin(tt.req)
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, e.Message, tt.want)
			}
			if code != http.StatusOK {
				if len(added) != before {
					t.Error("a refused server was added as an etcd member")
				}
				return
			}
			if resp.MemberID != 7 || string(resp.ClusterData) != "sealed" || resp.Config.ClusterCIDR != "10.42.0.0/16" {
				t.Errorf("answer %+v", resp)
			}
		})
	}
}
