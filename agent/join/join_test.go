package join

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
)

// server is a join API stand-in: TLS with httptest's CA, which /cacerts
// serves; answer decides the join response.
func server(t *testing.T, answer func(w http.ResponseWriter, req joinapi.Request)) (*httptest.Server, []byte) {
	t.Helper()
	var caPEM []byte
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case joinapi.CACertsPath:
			w.Write(caPEM)
		case joinapi.JoinPath:
			var req joinapi.Request
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Errorf("join request: %v", err)
			}
			answer(w, req)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM = pemCert(srv.Certificate().Raw)
	return srv, caPEM
}

func config(t *testing.T, url string, tok token.Token) Config {
	return Config{Server: url, Token: tok, NodeName: "edge-1", AgentDir: t.TempDir(), RetryLogEvery: time.Hour}
}

func TestCAHashMismatchIsRefused(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, _ joinapi.Request) { t.Error("the secret was sent to an unpinned server") })
	tok := token.Token{CAHash: strings.Repeat("ab", 32), Username: token.ServerUser, Secret: "s"}
	_, err := Join(context.Background(), config(t, srv.URL, tok))
	var refused *Refused
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "is not the one the token names") {
		t.Fatalf("err = %v, want a refusal naming the CA mismatch", err)
	}
}

func TestServerRefusalIsFinal(t *testing.T) {
	calls := 0
	srv, caPEM := server(t, func(w http.ResponseWriter, _ joinapi.Request) {
		calls++
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(joinapi.Error{Message: "bad token"})
	})
	tok := token.Token{CAHash: token.CAHash(caPEM), Username: token.ServerUser, Secret: "s"}
	_, err := Join(context.Background(), config(t, srv.URL, tok))
	var refused *Refused
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "bad token") || calls != 1 {
		t.Fatalf("err = %v after %d calls, want one call and a refusal", err, calls)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	calls := 0
	var keysSent []string
	srv, caPEM := server(t, func(w http.ResponseWriter, req joinapi.Request) {
		calls++
		keysSent = append(keysSent, req.CSRs[joinapi.CertKubeletClient])
		switch calls {
		case 1: // the apiserver before the join API's RBAC exists
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "message": "forbidden", "code": 403})
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(joinapi.Error{Message: "name claimed moments ago", Retry: true})
		default:
			w.WriteHeader(http.StatusOK)
			json.NewEncoder(w).Encode(joinapi.Response{ServerCA: "x"})
		}
	})
	c := config(t, srv.URL, token.Token{CAHash: token.CAHash(caPEM), Username: token.ServerUser, Secret: "s"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Join(ctx, c)
	// The third answer is malformed (no certificates): final, after two retries.
	var refused *Refused
	if calls != 3 || !errors.As(err, &refused) {
		t.Fatalf("calls %d, err %v; want 2 retries then a final error", calls, err)
	}
	if a, b := csrKey(t, keysSent[0]), csrKey(t, keysSent[2]); !a.Equal(b) {
		t.Error("the node made a new key for a retry; its keys must be kept")
	}
	pw, err := os.ReadFile(filepath.Join(c.AgentDir, "node-password"))
	if err != nil || len(strings.TrimSpace(string(pw))) != 64 {
		t.Errorf("node password: %q, %v", pw, err)
	}
	st, _ := os.Stat(filepath.Join(c.AgentDir, "tls", "client-kubelet.key"))
	if st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("kubelet client key: %v", st)
	}
}

func TestUnreachableServerWaitsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := Join(ctx, config(t, "https://127.0.0.1:1", token.Token{Secret: "s"}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's end", err)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func csrKey(t *testing.T, csrPEM string) interface{ Equal(crypto.PublicKey) bool } {
	t.Helper()
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		t.Fatal("no CSR sent")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
}

// A node restarted while its given server is down asks the servers it
// learned before.
func TestUnreachableServerFallsBackToRememberedOnes(t *testing.T) {
	asked := 0
	srv, caPEM := server(t, func(w http.ResponseWriter, _ joinapi.Request) {
		asked++
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(joinapi.Error{Message: "stop here"})
	})
	c := config(t, "https://127.0.0.1:1", token.Token{CAHash: token.CAHash(caPEM), Username: token.ServerUser, Secret: "s"})
	c.Fallbacks = []string{srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Join(ctx, c)
	var refused *Refused
	if asked != 1 || !errors.As(err, &refused) || !strings.Contains(err.Error(), "stop here") {
		t.Fatalf("asked %d, err %v; want the remembered server's answer", asked, err)
	}
}
