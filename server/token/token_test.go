package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var caPEM = []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")

func write(path string, data []byte, mode os.FileMode) error { return os.WriteFile(path, data, mode) }

func TestGeneratedTokenIsKeptWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok, err := Ensure(path, "", caPEM, write)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Secret) != 32 || tok.CAHash != CAHash(caPEM) {
		t.Errorf("token = %+v", tok)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, st.Mode())
	}
	if !strings.HasPrefix(tok.String(), "K10"+CAHash(caPEM)+"::server:") {
		t.Errorf("token format %q", tok)
	}
	again, err := Ensure(path, "", caPEM, write)
	if err != nil || again != tok {
		t.Errorf("second start got %+v, %v; want the stored %+v", again, err, tok)
	}
	other, _ := Ensure(filepath.Join(t.TempDir(), "token"), "", caPEM, write)
	if other.Secret == tok.Secret {
		t.Error("two generated tokens are equal")
	}
}

func TestGivenToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok, err := Ensure(path, "mysecret", caPEM, write)
	if err != nil || tok.Secret != "mysecret" {
		t.Fatalf("Ensure = %+v, %v", tok, err)
	}
	// The same secret, bare or in full form, is accepted on restart.
	if _, err := Ensure(path, "mysecret", caPEM, write); err != nil {
		t.Errorf("same bare token refused: %v", err)
	}
	if _, err := Ensure(path, tok.String(), caPEM, write); err != nil {
		t.Errorf("same full token refused: %v", err)
	}
	before, _ := os.ReadFile(path)
	_, err = Ensure(path, "another", caPEM, write)
	if err == nil || !strings.Contains(err.Error(), "differs from the token this cluster was created with") {
		t.Errorf("different token: err = %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused token overwrote the stored one")
	}
}

func TestTokenForOtherCA(t *testing.T) {
	foreign := Token{CAHash: CAHash([]byte("other CA")), Secret: "s"}.String()
	_, err := Ensure(filepath.Join(t.TempDir(), "token"), foreign, caPEM, write)
	if err == nil || !strings.Contains(err.Error(), "different server CA") {
		t.Errorf("err = %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Token
		wantErr bool
	}{
		{in: "abc", want: Token{Secret: "abc"}},
		{in: " abc\n", want: Token{Secret: "abc"}},
		{in: "K10" + CAHash(caPEM) + "::server:pw", want: Token{CAHash: CAHash(caPEM), Secret: "pw"}},
		{in: "", wantErr: true},
		{in: "K10zz::server:pw", wantErr: true},
		{in: "K10" + CAHash(caPEM) + "::node:pw", wantErr: true},
		{in: "has space", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("Parse(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t")
	os.WriteFile(p, []byte("  tok \n"), 0o600)
	if got, err := ReadFile(p); err != nil || got != "tok" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := ReadFile(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("missing token file: %v", err)
	}
}
