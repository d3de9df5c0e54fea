package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var caPEM = []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")

func TestGeneratedTokenIsKeptWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok, err := Ensure(path, ServerUser, "--token", "", caPEM)
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
	again, err := Ensure(path, ServerUser, "--token", "", caPEM)
	if err != nil || again != tok {
		t.Errorf("second start got %+v, %v; want the stored %+v", again, err, tok)
	}
	other, _ := Ensure(filepath.Join(t.TempDir(), "token"), ServerUser, "--token", "", caPEM)
	if other.Secret == tok.Secret {
		t.Error("two generated tokens are equal")
	}
}

func TestGivenToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok, err := Ensure(path, ServerUser, "--token", "mysecret", caPEM)
	if err != nil || tok.Secret != "mysecret" {
		t.Fatalf("Ensure = %+v, %v", tok, err)
	}
	// The same secret, bare or in full form, is accepted on restart.
	if _, err := Ensure(path, ServerUser, "--token", "mysecret", caPEM); err != nil {
		t.Errorf("same bare token refused: %v", err)
	}
	if _, err := Ensure(path, ServerUser, "--token", tok.String(), caPEM); err != nil {
		t.Errorf("same full token refused: %v", err)
	}
	before, _ := os.ReadFile(path)
	_, err = Ensure(path, ServerUser, "--token", "another", caPEM)
	if err == nil || !strings.Contains(err.Error(), "differs from the token this cluster was created with") {
		t.Errorf("different token: err = %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused token overwrote the stored one")
	}
}

func TestTokenForOtherCA(t *testing.T) {
	foreign := Token{CAHash: CAHash([]byte("other CA")), Username: ServerUser, Secret: "s"}.String()
	_, err := Ensure(filepath.Join(t.TempDir(), "token"), ServerUser, "--token", foreign, caPEM)
	if err == nil || !strings.Contains(err.Error(), "different server CA") {
		t.Errorf("err = %v", err)
	}
}

func TestParse(t *testing.T) {
	hash := CAHash(caPEM)
	tests := []struct {
		in      string
		want    Token
		wantErr bool
	}{
		{in: "abc", want: Token{Secret: "abc"}},
		{in: " abc\n", want: Token{Secret: "abc"}},
		{in: "K10" + hash + "::server:pw", want: Token{CAHash: hash, Username: ServerUser, Secret: "pw"}},
		{in: "K10" + hash + "::node:pw", want: Token{CAHash: hash, Username: NodeUser, Secret: "pw"}},
		{in: "K10" + hash + "::abcdef.0123456789abcdef", want: Token{CAHash: hash, Secret: "abcdef.0123456789abcdef"}},
		{in: "abcdef.0123456789abcdef", want: Token{Secret: "abcdef.0123456789abcdef"}},
		{in: "server:pw", want: Token{Username: ServerUser, Secret: "pw"}},
		{in: "", wantErr: true},
		{in: "K10zz::server:pw", wantErr: true},
		{in: "K10" + hash + "::admin:pw", wantErr: true},
		{in: "K10" + hash + "::server:", wantErr: true},
		{in: "has space", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("Parse(%q) = %+v, %v", tt.in, got, err)
		}
		if err == nil && got.CAHash != "" && got.String() != strings.TrimSpace(tt.in) {
			t.Errorf("Parse(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestBootstrapID(t *testing.T) {
	for in, want := range map[string]string{
		"abcdef.0123456789abcdef":        "abcdef",
		"ABCDEF.0123456789abcdef":        "",
		"abcdef.short":                   "",
		"server:abcdef.0123456789abcdef": "",
	} {
		tok, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if id, ok := tok.BootstrapID(); id != want || ok != (want != "") {
			t.Errorf("BootstrapID(%q) = %q, %v", in, id, ok)
		}
	}
}

func TestAgentTokenIsNotAServerToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent-token")
	tok, err := Ensure(path, NodeUser, "--agent-token", "", caPEM)
	if err != nil || !strings.HasPrefix(tok.String(), "K10"+CAHash(caPEM)+"::node:") {
		t.Fatalf("agent token %q, %v", tok, err)
	}
	serverForm := Token{Username: ServerUser, Secret: "x"}.String()
	if _, err := Ensure(filepath.Join(t.TempDir(), "a"), NodeUser, "--agent-token", serverForm, caPEM); err == nil {
		t.Error("a server:… token was accepted as --agent-token")
	}
	if _, err := Ensure(filepath.Join(t.TempDir(), "b"), ServerUser, "--token", "abcdef.0123456789abcdef", caPEM); err == nil {
		t.Error("a bootstrap token was accepted as --token")
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
