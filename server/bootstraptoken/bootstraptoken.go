// Package bootstraptoken keeps short-lived join tokens the way kubeadm does:
// as bootstrap-token-<id> Secrets in kube-system (the controller-manager's
// tokencleaner deletes expired ones; expiry is also checked at every use).
package bootstraptoken

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// ErrInvalid says a token does not (or no longer) exist, has expired, or
// may not be used to join.
var ErrInvalid = errors.New("bootstrap token is unknown, deleted or expired")

// Info describes a stored token; the secret is never listed.
type Info struct {
	ID          string
	Expires     time.Time // zero: never
	Description string
	Usages      []string
}

// Create stores a new token valid for ttl (0: forever) and returns it as
// "<id>.<secret>".
func Create(ctx context.Context, c kubernetes.Interface, ttl time.Duration, description string, now time.Time) (string, Info, error) {
	tok, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return "", Info{}, err
	}
	id, secret, _ := strings.Cut(tok, ".")
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:               []byte(id),
		bootstrapapi.BootstrapTokenSecretKey:           []byte(secret),
		bootstrapapi.BootstrapTokenUsageAuthentication: []byte("true"),
	}
	info := Info{ID: id, Description: description, Usages: []string{"authentication"}}
	if ttl > 0 {
		info.Expires = now.Add(ttl).UTC().Truncate(time.Second)
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(info.Expires.Format(time.RFC3339))
	}
	if description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(description)
	}
	_, err = c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id)},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		return "", Info{}, fmt.Errorf("store bootstrap token: %w", err)
	}
	return tok, info, nil
}

// List returns the stored tokens, by id.
func List(ctx context.Context, c kubernetes.Interface) ([]Info, error) {
	secrets, err := c.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken),
	})
	if err != nil {
		return nil, fmt.Errorf("list bootstrap tokens: %w", err)
	}
	var out []Info
	for _, s := range secrets.Items {
		id := string(s.Data[bootstrapapi.BootstrapTokenIDKey])
		if bootstraputil.BootstrapTokenSecretName(id) != s.Name {
			continue // not a well-formed token
		}
		info := Info{ID: id, Description: string(s.Data[bootstrapapi.BootstrapTokenDescriptionKey])}
		if exp := string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]); exp != "" {
			info.Expires, _ = time.Parse(time.RFC3339, exp)
		}
		for k, v := range s.Data {
			if u, ok := strings.CutPrefix(k, bootstrapapi.BootstrapTokenUsagePrefix); ok && string(v) == "true" {
				info.Usages = append(info.Usages, u)
			}
		}
		sort.Strings(info.Usages)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes the token with this id (or "<id>.<secret>").
func Delete(ctx context.Context, c kubernetes.Interface, id string) error {
	id, _, _ = strings.Cut(id, ".")
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return fmt.Errorf("%q is not a bootstrap token id (6 characters a-z, 0-9)", id)
	}
	err := c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("bootstrap token %s does not exist (see cluster token list)", id)
	}
	if err != nil {
		return fmt.Errorf("delete bootstrap token %s: %w", id, err)
	}
	return nil
}

// Validate checks "<id>.<secret>" against the stored Secret: it must exist,
// match in constant time, allow authentication and not have expired.
// It returns ErrInvalid (wrapped, naming the id) when the token is not
// valid, and other errors when the API could not be asked.
func Validate(ctx context.Context, c kubernetes.Interface, tok string, now time.Time) error {
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || !bootstraputil.IsValidBootstrapToken(tok) {
		return fmt.Errorf("%w: malformed", ErrInvalid)
	}
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("bootstrap token %s: %w", id, ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("read bootstrap token %s: %w", id, err)
	}
	stored := s.Data[bootstrapapi.BootstrapTokenSecretKey]
	if s.Type != bootstrapapi.SecretTypeBootstrapToken || s.DeletionTimestamp != nil ||
		subtle.ConstantTimeCompare(stored, []byte(secret)) != 1 ||
		string(s.Data[bootstrapapi.BootstrapTokenUsageAuthentication]) != "true" {
		return fmt.Errorf("bootstrap token %s: %w", id, ErrInvalid)
	}
	if exp := string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || !now.Before(t) {
			return fmt.Errorf("bootstrap token %s: %w", id, ErrInvalid)
		}
	}
	return nil
}
