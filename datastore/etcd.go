package datastore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/logging"
)

// Embedded etcd's ports on the server's node IP (etcd's own defaults).
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// EtcdTLS are the files of the embedded etcd's TLS: one CA (the cluster's
// etcd CA) verifies servers, peers and clients alike.
type EtcdTLS struct {
	CA         string
	ServerCert string // clients' view of etcd: node IP, 127.0.0.1, localhost
	ServerKey  string
	PeerCert   string // server and client auth between members
	PeerKey    string
	ClientCert string // the apiserver's and our own client certificate
	ClientKey  string
}

// Etcd is the embedded etcd component (go.etcd.io/etcd/server/v3/embed),
// the upstream engine: the apiserver talks to it directly, no kine.
type Etcd struct {
	// Member is this member's name, kept across restarts.
	Member string
	// Dir is etcd's data dir (<data-dir>/server/db/etcd).
	Dir    string
	NodeIP net.IP
	TLS    EtcdTLS
	// InitialCluster is name=peerURL,… when this member joins an existing
	// cluster ("" for a new cluster of this member alone); it is ignored
	// once Dir holds a member.
	InitialCluster string
	// ForceNewCluster makes the member in Dir a cluster of itself alone
	// (--cluster-reset).
	ForceNewCluster bool

	e     *embed.Etcd
	done  chan error
	once  sync.Once
	level zap.AtomicLevel
}

var _ component.Component = (*Etcd)(nil)

// Name implements component.Component.
func (e *Etcd) Name() string { return "etcd" }

// PeerURL is the address other members reach this one at.
func (e *Etcd) PeerURL() string {
	return "https://" + net.JoinHostPort(e.NodeIP.String(), strconv.Itoa(EtcdPeerPort))
}

// ClientURL is the address other servers' clients reach this member at.
func (e *Etcd) ClientURL() string {
	return "https://" + net.JoinHostPort(e.NodeIP.String(), strconv.Itoa(EtcdClientPort))
}

// Endpoints are the etcd URLs the apiserver uses: the local member, on
// loopback.
func (e *Etcd) Endpoints() []string {
	return []string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(EtcdClientPort))}
}

// HasMember reports whether dir holds an etcd member's data.
func HasMember(dir string) bool {
	_, err := os.Stat(dir + "/member/wal")
	return err == nil
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

func (e *Etcd) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = e.Member
	cfg.Dir = e.Dir
	loopback := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(EtcdClientPort))
	cfg.ListenClientUrls = []url.URL{mustURL(e.ClientURL())}
	if !e.NodeIP.IsLoopback() {
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, mustURL(loopback))
	}
	cfg.AdvertiseClientUrls = []url.URL{mustURL(e.ClientURL())}
	cfg.ListenPeerUrls = []url.URL{mustURL(e.PeerURL())}
	cfg.AdvertisePeerUrls = []url.URL{mustURL(e.PeerURL())}
	// The metrics of etcd are served by nothing: no plain-HTTP listener.
	cfg.ListenMetricsUrls = nil
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile: e.TLS.ServerCert, KeyFile: e.TLS.ServerKey, TrustedCAFile: e.TLS.CA, ClientCertAuth: true,
	}
	cfg.PeerTLSInfo = transport.TLSInfo{
		CertFile: e.TLS.PeerCert, KeyFile: e.TLS.PeerKey, TrustedCAFile: e.TLS.CA, ClientCertAuth: true,
	}
	cfg.InitialClusterToken = "cluster"
	if e.InitialCluster != "" {
		cfg.InitialCluster = e.InitialCluster
		cfg.ClusterState = embed.ClusterStateFlagExisting
	} else {
		cfg.InitialCluster = e.Member + "=" + e.PeerURL()
		cfg.ClusterState = embed.ClusterStateFlagNew
	}
	cfg.ForceNewCluster = e.ForceNewCluster
	// k3s's settings: a revision-based history of 1000 is plenty for the
	// apiserver's watch cache, which compacts itself every 5 minutes.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "0" // the apiserver compacts
	cfg.SnapshotCount = 10000
	cfg.QuotaBackendBytes = 2 * 1024 * 1024 * 1024
	// Warnings and errors only, and none while stopping (etcd reports its
	// own listeners closing as errors).
	e.level = zap.NewAtomicLevelAt(zap.WarnLevel)
	zc := zap.NewProductionConfig()
	zc.Level = e.level
	zc.Encoding = "console"
	zc.DisableStacktrace = true
	zc.Sampling = nil
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if lg, err := zc.Build(); err == nil {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg.Named("etcd"))
	}
	return cfg
}

// Start implements component.Component: it starts the member and waits
// until it has joined its cluster (which needs a quorum of members).
func (e *Etcd) Start(ctx context.Context) error {
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return err
	}
	etcd, err := embed.StartEtcd(e.config())
	if err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	e.e = etcd
	e.done = make(chan error, 1)
	go func() {
		// Err yields fatal errors of the member's servers.
		err, ok := <-etcd.Err()
		if ok && err != nil {
			e.done <- err
		}
		close(e.done)
	}()
	logging.For("etcd").Infof("member %s: peers at %s, clients at %s and 127.0.0.1 (TLS, client certificates only)", e.Member, e.PeerURL(), e.ClientURL())
	return nil
}

// Ready implements component.Component: the member has joined the
// cluster and serves clients.
func (e *Etcd) Ready(ctx context.Context) error {
	select {
	case <-e.e.Server.ReadyNotify():
		return nil
	case <-e.e.Server.StopNotify():
		return errors.New("etcd stopped before it was ready")
	case <-ctx.Done():
		return fmt.Errorf("etcd member %s has not joined its cluster (is a quorum of members running?): %w", e.Member, ctx.Err())
	}
}

// Done implements component.Failer.
func (e *Etcd) Done() <-chan error { return e.done }

// MemberID is this member's ID, once started.
func (e *Etcd) MemberID() uint64 { return uint64(e.e.Server.MemberID()) }

// IsLearner reports whether this member is a non-voting learner.
func (e *Etcd) IsLearner() bool { return e.e.Server.IsLearner() }

// EtcdMember is a member as this member knows it.
type EtcdMember struct {
	Name       string
	ClientURLs []string
	IsLearner  bool
}

// Members are the cluster's members as this (started) member knows them;
// a learner can tell who the voting members are without asking them.
func (e *Etcd) Members() []EtcdMember {
	var out []EtcdMember
	for _, m := range e.e.Server.Cluster().Members() {
		out = append(out, EtcdMember{Name: m.Name, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out
}

// Stop implements component.Component.
func (e *Etcd) Stop() error {
	if e.e == nil {
		return nil
	}
	e.once.Do(func() {
		e.level.SetLevel(zap.FatalLevel)
		e.e.Close()
	})
	return nil
}

// EtcdClient is a client of the members at endpoints with the etcd client
// certificate; the caller closes it.
func EtcdClient(endpoints []string, t EtcdTLS) (*clientv3.Client, error) {
	tlsConfig, err := ClientTLS(t)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConfig,
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// ClientTLS is the client side of etcd's TLS.
func ClientTLS(t EtcdTLS) (*tls.Config, error) {
	info := transport.TLSInfo{CertFile: t.ClientCert, KeyFile: t.ClientKey, TrustedCAFile: t.CA}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client TLS: %w", err)
	}
	return c, nil
}
