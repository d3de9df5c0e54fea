// Package token makes and checks the server token agents join with.
//
// The format is k3s's "secure" token: K10<sha256 of the server CA>::server:<secret>.
// The hash lets an agent pin the server CA before it trusts anything the
// server says; the secret authenticates the agent. A bare secret is accepted
// as input and stored in the full form.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

const (
	prefix   = "K10"
	userPart = "::server:"
)

// Token is a parsed server token.
type Token struct {
	// CAHash is the hex sha256 of the server CA bundle; empty for a bare secret.
	CAHash string
	// Secret is the shared password.
	Secret string
}

// String renders the full secure form.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Secret
	}
	return prefix + t.CAHash + userPart + t.Secret
}

// Parse accepts a full K10… token or a bare secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token is empty")
	}
	if strings.HasPrefix(s, prefix) && strings.Contains(s, "::") {
		rest := strings.TrimPrefix(s, prefix)
		hash, secret, ok := strings.Cut(rest, userPart)
		if !ok || secret == "" {
			return Token{}, errors.New("token starts with K10 but is not K10<ca-hash>::server:<secret>")
		}
		if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
			return Token{}, errors.New("token's CA hash is not a hex sha256")
		}
		return Token{CAHash: hash, Secret: secret}, nil
	}
	if strings.ContainsAny(s, " \t\n:") {
		return Token{}, errors.New("token must not contain whitespace or ':'")
	}
	return Token{Secret: s}, nil
}

// CAHash is the hash an agent compares with the CA it is shown.
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

// Ensure returns the server token kept at path, creating it on first start.
// given is the user's --token (may be empty); caPEM is the server CA bundle.
// A given token that differs from the stored one is an error: agents that
// joined with the stored token must keep working, so we never overwrite it.
func Ensure(path, given string, caPEM []byte, write func(path string, data []byte, mode os.FileMode) error) (Token, error) {
	hash := CAHash(caPEM)
	var want Token
	if given != "" {
		t, err := Parse(given)
		if err != nil {
			return Token{}, fmt.Errorf("--token: %w", err)
		}
		if t.CAHash != "" && t.CAHash != hash {
			return Token{}, errors.New("--token names a different server CA (its K10 hash does not match this data dir's CA)")
		}
		want = Token{CAHash: hash, Secret: t.Secret}
	}

	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored, perr := Parse(string(data))
		if perr != nil {
			return Token{}, fmt.Errorf("stored token %s: %w", path, perr)
		}
		stored.CAHash = hash
		if given != "" && want.Secret != stored.Secret {
			return Token{}, fmt.Errorf("--token differs from the token this cluster was created with (kept in %s); use the stored token or a new --data-dir", path)
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
		want = Token{CAHash: hash, Secret: secret}
	}
	if err := write(path, []byte(want.String()+"\n"), 0o600); err != nil {
		return Token{}, err
	}
	return want, nil
}
