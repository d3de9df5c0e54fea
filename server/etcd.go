package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/agent/join"
	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/internal/fileutil"
	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server/bootstrap"
	"github.com/cluster-io/cluster/server/etcdsnapshot"
	"github.com/cluster-io/cluster/server/options"
	"github.com/cluster-io/cluster/server/pki"
	"github.com/cluster-io/cluster/server/supervisor"
)

var etcdLog = logging.For("etcd")

// etcdTimerSlack bounds how late an idle server's timers may fire
// (internal/procs) when it runs an etcd member: its raft heartbeats are
// 100 ms apart (etcd's default), and it warns of an overloaded leader when
// one goes out more than twice that after the one before.
const etcdTimerSlack = 20 * time.Millisecond

// Where the embedded etcd keeps its state under <data-dir>/server.
func etcdDir(serverDir string) string      { return filepath.Join(serverDir, "db", "etcd") }
func etcdNameFile(serverDir string) string { return filepath.Join(serverDir, "db", "etcd-name") }
func sqliteFile(serverDir string) string   { return filepath.Join(serverDir, "db", "state.db") }
func etcdTLS(t pki.Files) datastore.EtcdTLS {
	return datastore.EtcdTLS{
		CA:         t.EtcdCA.Cert,
		ServerCert: t.EtcdServer.Cert, ServerKey: t.EtcdServer.Key,
		PeerCert: t.EtcdPeer.Cert, PeerKey: t.EtcdPeer.Key,
		ClientCert: t.EtcdClient.Cert, ClientKey: t.EtcdClient.Key,
	}
}

// usesEtcd reports whether this server runs embedded etcd: asked for
// (--cluster-init, --server, --cluster-reset) or kept from an earlier start.
func usesEtcd(opts *options.Server, serverDir string) bool {
	if opts.DatastoreEndpoint != "" {
		return false
	}
	return opts.ClusterInit || opts.Server != "" || opts.ClusterReset || datastore.HasMember(etcdDir(serverDir))
}

// memberName is this server's etcd member name, made once from the host
// name and a random suffix (k3s's form), so that a reinstalled machine is
// a new member.
func memberName(serverDir string) (string, error) {
	path := etcdNameFile(serverDir)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	host := strings.ToLower(hostnameOr("server"))
	host = regexp.MustCompile(`[^a-z0-9.-]+`).ReplaceAllString(host, "-")
	host = strings.Trim(host, "-.")
	if len(host) > 40 {
		host = host[:40]
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	name := host + "-" + hex.EncodeToString(suffix)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return name, fileutil.WriteAtomic(path, []byte(name+"\n"), 0o600)
}

// etcdStart is the result of startEtcd.
type etcdStart struct {
	etcd   *datastore.Etcd
	client *clientv3.Client // to the local member; the caller closes it
	reset  bool             // --cluster-reset done: the server exits
}

// startEtcd prepares and starts this server's etcd member: joining the
// cluster of --server (which hands over the cluster's CAs and keys), or
// creating a cluster (migrating an existing SQLite datastore into it), or
// resetting the membership (--cluster-reset, optionally from a snapshot).
func startEtcd(ctx context.Context, mgr *component.Manager, opts *options.Server, p paths, serverDir string, givenToken string, sans pki.SANs, ip net.IP) (*etcdStart, error) {
	name, err := memberName(serverDir)
	if err != nil {
		return nil, fmt.Errorf("etcd member name: %w", err)
	}
	dir := etcdDir(serverDir)
	e := &datastore.Etcd{Member: name, Dir: dir, NodeIP: ip, TLS: etcdTLS(p.tls)}
	hasMember := datastore.HasMember(dir)

	if opts.ClusterReset && !hasMember && opts.ClusterResetRestore == "" {
		return nil, fmt.Errorf("--cluster-reset: %s holds no etcd member to reset (give --cluster-reset-restore-path to start from a snapshot)", dir)
	}
	// A new member of another server's cluster: the cluster's keys and the
	// membership come through the join API, with the server token only.
	if opts.Server != "" && !hasMember && !opts.ClusterReset {
		tok, err := token.Parse(givenToken)
		if err != nil {
			return nil, fmt.Errorf("--token: %w", err)
		}
		if tok.Username == token.NodeUser {
			return nil, errors.New("--token is an agent token: a server joins with the server token (<data-dir>/server/token of the first server)")
		}
		etcdLog.Infof("joining the etcd cluster of %s as member %s", opts.Server, name)
		resp, err := join.JoinServer(ctx, opts.Server, tok, name, e.PeerURL())
		if err != nil {
			return nil, fmt.Errorf("join %s: %w", opts.Server, err)
		}
		if err := bootstrap.Open(tok.Secret, resp.ClusterData, clusterDataFiles(p, serverDir)); err != nil {
			if errors.Is(err, bootstrap.ErrWrongToken) {
				return nil, errors.New("--token does not decrypt the cluster data the server sent")
			}
			return nil, err
		}
		e.InitialCluster = resp.InitialCluster
	}
	if _, err := pki.Ensure(p.tls.Dir, sans); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if err := pki.EnsureEtcd(p.tls, ip); err != nil {
		return nil, fmt.Errorf("etcd certificates: %w", err)
	}
	if opts.ClusterReset {
		if opts.ClusterResetRestore != "" {
			if err := restoreSnapshot(opts.ClusterResetRestore, e); err != nil {
				return nil, err
			}
		} else {
			e.ForceNewCluster = true
		}
	}
	migrate := !hasMember && opts.Server == "" && !opts.ClusterReset && fileExists(sqliteFile(serverDir))
	if err := mgr.Start(ctx, e); err != nil {
		return nil, err
	}
	client, err := datastore.EtcdClient(e.Endpoints(), e.TLS)
	if err != nil {
		return nil, err
	}
	s := &etcdStart{etcd: e, client: client, reset: opts.ClusterReset}
	if e.IsLearner() {
		if err := promoteSelf(ctx, e); err != nil {
			client.Close()
			return nil, err
		}
	}
	if migrate {
		if err := migrateSQLite(ctx, serverDir, client); err != nil {
			client.Close()
			return nil, err
		}
	}
	return s, nil
}

// promoteSelf makes this learner a voting member once it has caught up
// with the leader (etcd refuses earlier), asking the voting members.
func promoteSelf(ctx context.Context, e *datastore.Etcd) error {
	begin := time.Now()
	var urls []string
	for _, m := range e.Members() {
		if !m.IsLearner {
			urls = append(urls, m.ClientURLs...)
		}
	}
	client, err := datastore.EtcdClient(urls, e.TLS)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err = component.Poll(ctx, time.Second, func(ctx context.Context) error {
		_, err := client.MemberPromote(ctx, e.MemberID())
		if err != nil && strings.Contains(err.Error(), "not a learner") {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("promote etcd learner %s to a voting member: %w", e.Member, err)
	}
	// The leader has promoted it; this member learns so when it applies the
	// change, and refuses reads until then.
	err = component.Poll(ctx, 50*time.Millisecond, func(context.Context) error {
		if e.IsLearner() {
			return errors.New("the promotion is not applied locally yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", e.Member, err)
	}
	etcdLog.Infof("member %s is a voting member (in sync after %s)", e.Member, time.Since(begin).Round(time.Millisecond))
	return nil
}

// etcdMembers answers the join API's server joins: it adds the joining
// server as a learner and hands it the cluster data.
type etcdMembers struct {
	client      *clientv3.Client
	files       bootstrap.Files
	tokenSecret string
}

// AddServer implements supervisor.Server.AddServer.
func (m *etcdMembers) AddServer(ctx context.Context, name, peerURL string) (*joinapi.ServerJoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	list, err := m.client.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var id uint64
	for _, mem := range list.Members {
		switch {
		case !slices.Contains(mem.PeerURLs, peerURL):
			if mem.Name == "" && mem.IsLearner {
				// A learner that never started (a join that failed
				// half-way): etcd allows one learner at a time.
				etcdLog.Warnf("removing etcd learner %x (peer %v) that never started, for %s", mem.ID, mem.PeerURLs, name)
				if _, err := m.client.MemberRemove(ctx, mem.ID); err != nil {
					return nil, fmt.Errorf("remove stale etcd learner: %w", err)
				}
			}
		case mem.Name == "" || mem.Name == name:
			id = mem.ID // added before: the joining server starts again
		default:
			return nil, supervisor.Refuse(http.StatusConflict, "etcd member %s holds peer URL %s: remove it first (kubectl delete node of that server)", mem.Name, peerURL)
		}
	}
	if id == 0 {
		added, err := m.client.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return nil, fmt.Errorf("add etcd learner: %w", err)
		}
		id = added.Member.ID
	}
	list, err = m.client.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var initial []string
	for _, mem := range list.Members {
		n := mem.Name
		if mem.ID == id {
			n = name
		}
		if n == "" {
			continue
		}
		for _, u := range mem.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	sealed, err := bootstrap.Seal(m.tokenSecret, m.files)
	if err != nil {
		return nil, fmt.Errorf("cluster data: %w", err)
	}
	return &joinapi.ServerJoinResponse{ClusterData: sealed, MemberID: id, InitialCluster: strings.Join(initial, ",")}, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// restoreSnapshot replaces the member's data with a snapshot (checked by
// etcd's checksum) as a one-member cluster. The old data moves aside to
// <dir>-old-<unix time>; a snapshot that cannot be restored leaves it as
// it was.
func restoreSnapshot(path string, e *datastore.Etcd) error {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("--cluster-reset-restore-path %s: not a snapshot file (see 'cluster etcd-snapshot ls')", path)
	}
	tmp := e.Dir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := etcdsnapshot.Restore(path, tmp, e.Member, e.PeerURL()); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("restore %s: %w (the etcd data in %s is unchanged)", path, err, e.Dir)
	}
	if _, err := os.Stat(e.Dir); err == nil {
		old := fmt.Sprintf("%s-old-%d", e.Dir, time.Now().Unix())
		if err := os.Rename(e.Dir, old); err != nil {
			return err
		}
		etcdLog.Infof("the etcd data before the restore is kept in %s", old)
	}
	if err := os.Rename(tmp, e.Dir); err != nil {
		return err
	}
	etcdLog.Infof("restored snapshot %s", path)
	return nil
}

// migrateSQLite copies a SQLite datastore (a single server before
// --cluster-init) into the new etcd, once: the file is renamed afterwards.
func migrateSQLite(ctx context.Context, serverDir string, to *clientv3.Client) error {
	begin := time.Now()
	file := sqliteFile(serverDir)
	etcdLog.Infof("migrating the SQLite datastore %s into etcd", file)
	k := &datastore.Kine{DBDir: filepath.Dir(file), SocketPath: filepath.Join(serverDir, "kine-migrate.sock")}
	if err := k.Start(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", file, err)
	}
	defer k.Stop()
	from, err := datastoreClient(k.Endpoints())
	if err != nil {
		return err
	}
	defer from.Close()
	// Events expire in SQLite through kine's TTL; in etcd through a lease.
	lease, err := to.Grant(ctx, int64(time.Hour/time.Second))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	n := 0
	for _, prefix := range []string{"/registry/", bootstrap.Key} {
		resp, err := from.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("migrate: read %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			var opts []clientv3.OpOption
			if strings.HasPrefix(string(kv.Key), "/registry/events/") {
				opts = append(opts, clientv3.WithLease(lease.ID))
			}
			if _, err := to.Put(ctx, string(kv.Key), string(kv.Value), opts...); err != nil {
				return fmt.Errorf("migrate: write %s: %w", kv.Key, err)
			}
			n++
		}
	}
	if err := k.Stop(); err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(file+suffix, file+".migrated"+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	etcdLog.Infof("migrated %d keys from SQLite into etcd in %s; the SQLite file is kept as %s.migrated", n, time.Since(begin).Round(time.Millisecond), file)
	return nil
}

// memberAnnotation on a server's Node names its etcd member, so that
// deleting the Node removes the member.
const memberAnnotation = "cluster.io/etcd-member"

// markServerNode labels the server's own Node with its roles (as k3s
// does) and names its etcd member, retrying until the Node exists.
func markServerNode(ctx context.Context, client kubernetes.Interface, node, member string) {
	patch := fmt.Sprintf(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"true","node-role.kubernetes.io/etcd":"true"},"annotations":{%q:%q}}}`, memberAnnotation, member)
	err := component.Poll(ctx, 2*time.Second, func(ctx context.Context) error {
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
	if err != nil && ctx.Err() == nil {
		etcdLog.Warnf("label node %s: %v", node, err)
	}
}

// removeDeletedMembers removes the etcd member of every server Node that is
// deleted (`kubectl delete node`), as k3s does. Every server watches; the
// first removal wins and the others find no member.
func removeDeletedMembers(client kubernetes.Interface, etcd *clientv3.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
		nodes := factory.Core().V1().Nodes().Informer()
		_, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				node, ok := obj.(*corev1.Node)
				if !ok || node.Annotations[memberAnnotation] == "" {
					return
				}
				removeMember(ctx, etcd, node.Annotations[memberAnnotation], node.Name)
			},
		})
		if err != nil {
			return err
		}
		factory.Start(ctx.Done())
		<-ctx.Done()
		factory.Shutdown()
		return nil
	}
}

func removeMember(ctx context.Context, etcd *clientv3.Client, member, node string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := etcd.MemberList(ctx)
	if err != nil {
		etcdLog.Errorf("node %s deleted: list etcd members: %v", node, err)
		return
	}
	for _, m := range list.Members {
		if m.Name != member {
			continue
		}
		if _, err := etcd.MemberRemove(ctx, m.ID); err != nil {
			if !errors.Is(err, rpctypes.ErrMemberNotFound) {
				etcdLog.Errorf("node %s deleted: remove etcd member %s: %v", node, member, err)
			}
			return
		}
		etcdLog.Infof("node %s deleted: removed its etcd member %s", node, member)
	}
}

// startEtcdControllers runs what every embedded-etcd server runs besides
// the member: member removal on Node deletion and scheduled snapshots.
func startEtcdControllers(ctx context.Context, mgr *component.Manager, opts *options.Server, client kubernetes.Interface, etcd *clientv3.Client) error {
	components := []component.Component{&component.Runner{ComponentName: "etcd-members", Run: removeDeletedMembers(client, etcd), StopTimeout: 5 * time.Second, Optional: true}}
	if !opts.DisableSnapshots {
		etcdLog.Infof("snapshots at %q into %s, keeping %d", opts.ScheduleCron, opts.SnapshotDir(opts.DataDir), opts.Retention)
		components = append(components, &component.Runner{ComponentName: "etcd-snapshots", Run: scheduledSnapshots(opts.DataDir, agent.NodeName(opts.NodeName), opts.EtcdSnapshots), StopTimeout: 5 * time.Second, Optional: true})
	}
	return mgr.Start(ctx, components...)
}
