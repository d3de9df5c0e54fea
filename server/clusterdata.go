package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/server/bootstrap"
)

// clusterData is what servers on one datastore share (server/bootstrap).
type clusterData struct {
	store bootstrap.Store
	files bootstrap.Files
	found bool
}

// datastoreClient talks to the datastore's etcd API (kine's socket); the
// caller closes it.
func datastoreClient(endpoints []string) (*clientv3.Client, error) {
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("datastore client: %w", err)
	}
	return client, nil
}

func clusterDataFiles(p paths, serverDir string) bootstrap.Files {
	t := p.tls
	return bootstrap.Files{
		"server-ca.crt":         t.ServerCA.Cert,
		"server-ca.key":         t.ServerCA.Key,
		"client-ca.crt":         t.ClientCA.Cert,
		"client-ca.key":         t.ClientCA.Key,
		"request-header-ca.crt": t.RequestHeaderCA.Cert,
		"request-header-ca.key": t.RequestHeaderCA.Key,
		"service.key":           t.ServiceAccountKey,
		"etcd-ca.crt":           t.EtcdCA.Cert,
		"etcd-ca.key":           t.EtcdCA.Key,
		"agent-token":           filepath.Join(serverDir, "agent-token"),
	}
}

// restoreClusterData reads the datastore's cluster data and, if a server
// stored it already, writes its CAs, keys and agent token into this data
// dir, decrypted with the server token's secret (given, or kept from an
// earlier start).
func restoreClusterData(ctx context.Context, client *clientv3.Client, p paths, serverDir, givenToken string) (*clusterData, error) {
	d := &clusterData{store: bootstrap.Store{Client: client}, files: clusterDataFiles(p, serverDir)}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sealed, err := d.store.Get(rctx)
	if err != nil {
		return nil, err
	}
	if sealed == nil {
		return d, nil
	}
	d.found = true
	// A token kept from an earlier start wins; a given one must match it
	// (the same check and words as token.Ensure's).
	secret := ""
	tokenPath := filepath.Join(serverDir, "token")
	if t, err := token.Load(tokenPath); err == nil {
		secret = t.Secret
	}
	if givenToken != "" {
		t, err := token.Parse(givenToken)
		if err != nil {
			return nil, fmt.Errorf("--token: %w", err)
		}
		if secret != "" && t.Secret != secret {
			return nil, fmt.Errorf("--token differs from the token this cluster was created with (kept in %s); use the stored token or a new --data-dir", tokenPath)
		}
		secret = t.Secret
	}
	if secret == "" {
		return nil, errors.New("the datastore already holds a cluster: start this server with that cluster's server token (--token or --token-file, from <data-dir>/server/token of its first server)")
	}
	if err := bootstrap.Open(secret, sealed, d.files); err != nil {
		if errors.Is(err, bootstrap.ErrWrongToken) {
			return nil, errors.New("--token is not the server token of the cluster in this datastore (its data does not decrypt with it)")
		}
		return nil, err
	}
	log.Info("joined the cluster in the datastore: CAs and keys restored from its encrypted cluster data")
	return d, nil
}

// storeIfNew stores this server's cluster data unless it came from
// the datastore; another server storing first in between is an error (start
// again to join it).
func (d *clusterData) storeIfNew(ctx context.Context, secret string) error {
	if d.found {
		return nil
	}
	sealed, err := bootstrap.Seal(secret, d.files)
	if err != nil {
		return fmt.Errorf("cluster data: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stored, err := d.store.Create(ctx, sealed)
	if err != nil {
		return err
	}
	if !stored {
		return errors.New("another server created the cluster in this datastore at the same time; start this one again (with that cluster's --token) to join it")
	}
	return nil
}
