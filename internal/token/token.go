// Package token makes, keeps and parses the tokens nodes join with, in
// k3s's formats:
//
//	K10<ca-hash>::server:<secret>   the server token (--token)
//	K10<ca-hash>::node:<secret>     the agent token (--agent-token): joins agents, never servers
//	K10<ca-hash>::<id>.<secret>     a bootstrap token (cluster token create), kubeadm's id.secret
//
// <ca-hash> is the hex sha256 of the server CA bundle: a joining node
// compares it with the CA it is shown before it sends its secret. The same
// tokens without "K10<ca-hash>::" are accepted too, without that pinning.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/cluster-io/cluster/internal/fileutil"
)

const prefix = "K10"

// Usernames of the shared-secret tokens.
const (
	ServerUser = "server"
	NodeUser   = "node"
)

// Token is a parsed token.
type Token struct {
	// CAHash is the hex sha256 of the server CA bundle; empty when not pinned.
	CAHash string
	// Username is ServerUser or NodeUser; empty for a bare secret or a
	// bootstrap token.
	Username string
	// Secret is the shared password, or "<id>.<secret>" for a bootstrap token.
	Secret string
}

// String renders the token as users pass it.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Credential()
	}
	return prefix + t.CAHash + "::" + t.Credential()
}

// Credential is what a node sends the server: the token without its CA hash.
func (t Token) Credential() string {
	if t.Username == "" {
		return t.Secret
	}
	return t.Username + ":" + t.Secret
}

// BootstrapID returns the id of a bootstrap token.
func (t Token) BootstrapID() (string, bool) {
	if t.Username != "" || !bootstraputil.IsValidBootstrapToken(t.Secret) {
		return "", false
	}
	id, _, _ := strings.Cut(t.Secret, ".")
	return id, true
}

// Parse accepts any of the package's formats, with or without the CA hash.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token is empty")
	}
	var t Token
	if rest, ok := strings.CutPrefix(s, prefix); ok && strings.Contains(rest, "::") {
		hash, cred, _ := strings.Cut(rest, "::")
		if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
			return Token{}, errors.New("token starts with K10 but its CA hash is not a hex sha256 (want K10<ca-hash>::server:<secret>)")
		}
		t.CAHash = hash
		s = cred
	}
	if strings.ContainsAny(s, " \t\n") {
		return Token{}, errors.New("token must not contain whitespace")
	}
	if user, secret, ok := strings.Cut(s, ":"); ok {
		if user != ServerUser && user != NodeUser {
			return Token{}, fmt.Errorf("token user %q is neither %q nor %q", user, ServerUser, NodeUser)
		}
		if secret == "" || strings.Contains(secret, ":") {
			return Token{}, fmt.Errorf("token %s:<secret> has no valid secret", user)
		}
		t.Username, t.Secret = user, secret
		return t, nil
	}
	t.Secret = s
	return t, nil
}

// CAHash is the hash a node compares with the CA bundle it is shown.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// Random returns a new secret of 32 hex characters.
func Random() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Ensure returns the shared-secret token of user (ServerUser or NodeUser)
// kept at path, creating it on first start. given is the user's flag value
// (may be empty; flag names it in errors); caPEM is the server CA bundle.
// A given token that differs from the stored one is an error: nodes that
// joined with the stored token must keep working, so it is never
// overwritten.
func Ensure(path, user, flag, given string, caPEM []byte) (Token, error) {
	hash := CAHash(caPEM)
	var want Token
	if given != "" {
		t, err := Parse(given)
		if err != nil {
			return Token{}, fmt.Errorf("%s: %w", flag, err)
		}
		if _, bootstrap := t.BootstrapID(); bootstrap || (t.Username != "" && t.Username != user) {
			return Token{}, fmt.Errorf("%s: want a secret or K10<ca-hash>::%s:<secret>", flag, user)
		}
		if t.CAHash != "" && t.CAHash != hash {
			return Token{}, fmt.Errorf("%s names a different server CA (its K10 hash does not match this data dir's CA)", flag)
		}
		want = Token{CAHash: hash, Username: user, Secret: t.Secret}
	}

	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored, perr := Parse(string(data))
		if perr != nil {
			return Token{}, fmt.Errorf("stored token %s: %w", path, perr)
		}
		stored.CAHash, stored.Username = hash, user
		if given != "" && want.Secret != stored.Secret {
			return Token{}, fmt.Errorf("%s differs from the token this cluster was created with (kept in %s); use the stored token or a new --data-dir", flag, path)
		}
		return stored, nil
	case !errors.Is(err, os.ErrNotExist):
		return Token{}, fmt.Errorf("read token: %w", err)
	}

	if given == "" {
		secret, err := Random()
		if err != nil {
			return Token{}, err
		}
		want = Token{CAHash: hash, Username: user, Secret: secret}
	}
	if err := fileutil.WriteAtomic(path, []byte(want.String()+"\n"), 0o600); err != nil {
		return Token{}, err
	}
	return want, nil
}

// Load reads a stored token without creating one.
func Load(path string) (Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Token{}, err
	}
	return Parse(string(data))
}
