// Package bootstrap shares what makes servers one cluster — the CAs, the
// service-account key and the agent token — through the datastore, the way
// k3s's bootstrap data does: the first server stores them, encrypted with
// the server token's secret (AES-256-GCM, key from PBKDF2-SHA256), and every
// later server on the same datastore, started with that token, restores
// them before it makes its own certificates. Without the token the data
// cannot be read; with a wrong one the server refuses to start, before it
// writes anything.
package bootstrap

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cluster-io/cluster/internal/fileutil"
)

// Key is where the data lives in the datastore (outside /registry, so the
// apiserver never sees it).
const Key = "/cluster/bootstrap"

const (
	saltSize   = 16
	iterations = 200_000
	version    = 1
)

// ErrWrongToken means the stored data is not encrypted with this secret.
var ErrWrongToken = errors.New("the token does not decrypt the cluster data in the datastore")

// Files maps a stable name (such as "server-ca.crt") to a file path.
type Files map[string]string

type envelope struct {
	Version int               `json:"version"`
	Files   map[string][]byte `json:"files"`
}

// Encrypt seals plain with a key derived from secret.
func Encrypt(secret string, plain []byte) ([]byte, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	gcm, err := newGCM(secret, salt)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append(salt, nonce...), gcm.Seal(nil, nonce, plain, nil)...)
	return out, nil
}

// Decrypt opens what Encrypt sealed; a wrong secret is ErrWrongToken.
func Decrypt(secret string, sealed []byte) ([]byte, error) {
	if len(sealed) < saltSize+12 {
		return nil, errors.New("cluster data in the datastore is truncated")
	}
	gcm, err := newGCM(secret, sealed[:saltSize])
	if err != nil {
		return nil, err
	}
	rest := sealed[saltSize:]
	plain, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], nil)
	if err != nil {
		return nil, ErrWrongToken
	}
	return plain, nil
}

func newGCM(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, secret, salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal reads files and encrypts them with secret. Files that do not exist
// are left out.
func Seal(secret string, files Files) ([]byte, error) {
	env := envelope{Version: version, Files: map[string][]byte{}}
	for name, path := range files {
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		env.Files[name] = data
	}
	plain, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	return Encrypt(secret, plain)
}

// Open decrypts sealed data and writes its files where files says. A file
// that exists already must hold the same bytes: a data dir of another
// cluster is refused, and nothing is overwritten.
func Open(secret string, sealed []byte, files Files) error {
	plain, err := Decrypt(secret, sealed)
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(plain, &env); err != nil {
		return fmt.Errorf("cluster data in the datastore: %w", err)
	}
	if env.Version != version {
		return fmt.Errorf("cluster data in the datastore has version %d; this binary reads %d", env.Version, version)
	}
	names := make([]string, 0, len(env.Files))
	for name := range env.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	// Check everything first, then write: all or nothing.
	for _, name := range names {
		path, ok := files[name]
		if !ok {
			continue
		}
		if old, err := os.ReadFile(path); err == nil && !bytes.Equal(old, env.Files[name]) {
			return fmt.Errorf("%s differs from the cluster's in the datastore: this data dir belongs to another cluster (use a fresh --data-dir)", path)
		}
	}
	for _, name := range names {
		path, ok := files[name]
		if !ok {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := fileutil.WriteAtomic(path, env.Files[name], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Store reads and creates the data in the datastore (kine's or etcd's
// API).
type Store struct{ Client *clientv3.Client }

// Get returns the stored data, or nil if there is none.
func (s Store) Get(ctx context.Context) ([]byte, error) {
	resp, err := s.Client.Get(ctx, Key)
	if err != nil {
		return nil, fmt.Errorf("read cluster data from the datastore: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// Create stores data unless some server stored its own first; it reports
// whether ours was stored.
func (s Store) Create(ctx context.Context, data []byte) (bool, error) {
	resp, err := s.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(Key), "=", 0)).
		Then(clientv3.OpPut(Key, string(data))).
		Commit()
	if err != nil {
		return false, fmt.Errorf("store cluster data in the datastore: %w", err)
	}
	return resp.Succeeded, nil
}
