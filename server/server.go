// Package server implements `cluster server`: it prepares the data dir (PKI,
// token, kubeconfigs), then runs kine and the upstream control plane in this
// process, in order, and stops them in reverse order.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/charts"
	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/embedded"
	"github.com/cluster-io/cluster/internal/argv"
	"github.com/cluster-io/cluster/internal/datadir"
	"github.com/cluster-io/cluster/internal/fileutil"
	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/kubeconfig"
	"github.com/cluster-io/cluster/internal/memtrim"
	"github.com/cluster-io/cluster/internal/preflight"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/logging"
	"github.com/cluster-io/cluster/server/deploy"
	"github.com/cluster-io/cluster/server/helm"
	"github.com/cluster-io/cluster/server/localstorage"
	"github.com/cluster-io/cluster/server/options"
	"github.com/cluster-io/cluster/server/pki"
	"github.com/cluster-io/cluster/server/servicelb"
	"github.com/cluster-io/cluster/server/supervisor"
	"github.com/cluster-io/cluster/version"
)

var log = logging.For("server")

// Run runs the server until ctx ends or a component fails. opts must be
// validated already.
func Run(ctx context.Context, opts *options.Server) error {
	begin := time.Now()
	log.Infof("starting %s", version.String())

	givenToken, err := readToken(opts.Token, opts.TokenFile)
	if err != nil {
		return err
	}
	givenAgentToken, err := readToken(opts.AgentToken, opts.AgentTokenFile)
	if err != nil {
		return err
	}
	mode, err := opts.KubeconfigMode()
	if err != nil {
		return err
	}
	idleGOGC := memtrim.NodeIdleGOGC
	if opts.DisableAgent {
		idleGOGC = memtrim.ControlPlaneIdleGOGC
	}
	idle, err := memtrim.IdleFromEnv(idleGOGC)
	if err != nil {
		return err
	}

	if err := preflight.Check(checks(opts), func(w string) { log.Warn(w) }); err != nil {
		return err
	}
	lock, err := datadir.Claim(opts.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	dataDir, _ := filepath.Abs(opts.DataDir)
	serverDir := filepath.Join(dataDir, "server")

	nodeIP, err := chooseNodeIP(opts.AdvertiseAddress)
	if err != nil {
		return err
	}

	p := newPaths(serverDir)
	mgr := component.NewManager()
	defer func() {
		log.Info("stopping")
		if err := mgr.Stop(); err != nil {
			log.Warnf("stop: %v", err)
		}
	}()
	// The server's own node runs on a manager of its own, stopped before
	// the control plane's. It prepares its runtime (binaries, containerd,
	// images) while the control plane starts: none of that needs the API. A
	// server joining another takes its networks from the cluster, so it
	// prepares only after the join, as an agent does.
	nodeMgr := component.NewManager()
	prep := startPrepare(ctx, nodeMgr, opts, dataDir)
	defer func() {
		prep.cancel()
		_, _ = prep.wait()
		if err := nodeMgr.Stop(); err != nil {
			log.Warnf("stop node: %v", err)
		}
	}()
	// The datastore first: servers sharing it share the cluster's CAs and
	// keys, which the first one stored there (server/bootstrap).
	if err := os.MkdirAll(serverDir, 0o700); err != nil {
		return err
	}
	sans, err := pki.APIServerSANs([]net.IP{nodeIP}, opts.ServiceCIDR, opts.ClusterDomain, opts.TLSSANs)
	if err != nil {
		return err
	}
	var (
		endpoints []string
		dsClient  *clientv3.Client
		etcdFiles *datastore.EtcdTLS
		dsName    string
		member    string // this server's etcd member
	)
	useEtcd := usesEtcd(opts, serverDir)
	if useEtcd {
		idle.Governor = idle.Governor.LimitTimerSlack(etcdTimerSlack)
		es, err := startEtcd(ctx, mgr, opts, p, serverDir, givenToken, sans, nodeIP)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer es.client.Close()
		if es.reset {
			log.Infof("etcd membership reset: this server's member is a cluster of its own now. Start it again without --cluster-reset; to rejoin another server, move its %s away and start it with --server pointing here", filepath.Join("<data-dir>", "server", "db"))
			return nil
		}
		endpoints, dsClient, dsName, member = es.etcd.Endpoints(), es.client, "embedded etcd", es.etcd.Member
		etcdFiles = &es.etcd.TLS
	} else {
		kine := &datastore.Kine{
			Endpoint:   opts.DatastoreEndpoint,
			DBDir:      filepath.Join(serverDir, "db"),
			SocketPath: p.kineSocket,
		}
		if err := mgr.Start(ctx, kine); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if dsClient, err = datastoreClient(kine.Endpoints()); err != nil {
			return err
		}
		defer dsClient.Close()
		endpoints, dsName = kine.Endpoints(), kine.Describe()
	}
	clusterData, err := restoreClusterData(ctx, dsClient, p, serverDir, givenToken)
	if err != nil {
		return err
	}

	if _, err := pki.Ensure(p.tls.Dir, sans); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	caPEM, err := os.ReadFile(p.tls.ServerCA.Cert)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	serverToken, err := token.Ensure(filepath.Join(serverDir, "token"), token.ServerUser, "--token", givenToken, caPEM)
	if err != nil {
		return err
	}
	var agentToken token.Token
	agentTokenPath := filepath.Join(serverDir, "agent-token")
	if _, statErr := os.Stat(agentTokenPath); givenAgentToken != "" || statErr == nil {
		if agentToken, err = token.Ensure(agentTokenPath, token.NodeUser, "--agent-token", givenAgentToken, caPEM); err != nil {
			return err
		}
	}
	if err := clusterData.storeIfNew(ctx, serverToken.Secret); err != nil {
		return err
	}

	cp := controlPlane{
		bindAddress:      opts.BindAddress,
		advertiseAddress: nodeIP,
		port:             opts.HTTPSListenPort,
		clusterCIDR:      opts.ClusterCIDR,
		serviceCIDR:      opts.ServiceCIDR,
		clusterDomain:    opts.ClusterDomain,
		p:                p,
		etcdServers:      endpoints,
		etcdTLS:          etcdFiles,
		sharedKine:       sharedDatastore(opts.DatastoreEndpoint),
	}
	if err := writeControlPlaneFiles(cp); err != nil {
		return err
	}

	join, err := newSupervisor(cp, opts, serverToken, agentToken, caPEM)
	if err != nil {
		return err
	}
	join.Datastore = dsName
	if useEtcd {
		members := &etcdMembers{client: dsClient, files: clusterData.files, tokenSecret: serverToken.Secret}
		join.AddServer = members.AddServer
	}
	routes := join.Routes()
	apiArgs := cp.apiServerArgs(opts.KubeAPIServerArgs)
	cmArgs := cp.controllerManagerArgs(opts.KubeControllerManagerArgs)
	schedArgs := cp.schedulerArgs(opts.KubeSchedulerArgs)
	readyClient, err := healthClient(p.tls.ServerCA.Cert)
	if err != nil {
		return err
	}
	// Servers sharing a datastore elect one controller-manager, one
	// scheduler and one of each of our controllers (server/leader.go).
	shared := sharedDatastore(opts.DatastoreEndpoint) || useEtcd
	identity := fmt.Sprintf("%s_%s", hostnameOr("server"), net.JoinHostPort(nodeIP.String(), strconv.Itoa(opts.HTTPSListenPort)))
	cmReady := component.HTTPReady(insecureHealthClient(), healthURL(argPort(cmArgs, controllerManagerPort)))
	schedReady := component.HTTPReady(insecureHealthClient(), healthURL(argPort(schedArgs, schedulerPort)))
	cmRun := func(ctx context.Context) error { return embedded.RunControllerManager(ctx, cmArgs) }
	schedRun := func(ctx context.Context) error { return embedded.RunScheduler(ctx, schedArgs) }
	var cmElection *elected
	if shared {
		cmElection = &elected{lease: "kube-controller-manager", identity: identity, kubeconfig: p.controllerKubeconfig, run: cmRun, ready: cmReady}
		schedElection := &elected{lease: "kube-scheduler", identity: identity, kubeconfig: p.schedulerKubeconfig, run: schedRun, ready: schedReady}
		cmRun, cmReady = cmElection.Run, cmElection.Ready
		schedRun, schedReady = schedElection.Run, schedElection.Ready
	}
	components := []component.Component{
		&component.Runner{
			ComponentName: "kube-apiserver",
			Run:           func(ctx context.Context) error { return embedded.RunAPIServer(ctx, apiArgs, routes) },
			ReadyFunc:     component.HTTPReady(readyClient, cp.loopbackURL()+"/readyz"),
			// It stops in about a second; only requests stuck on a
			// datastore that cannot answer (etcd without quorum: the last
			// server of a cluster) make it wait out its 60 s request
			// timeout, and then the stop of the whole server took longer
			// than the 90 s systemd waits. Its datastore stops next, which
			// ends those requests.
			StopTimeout: 20 * time.Second,
		},
		&component.Runner{ComponentName: "kube-controller-manager", Run: cmRun, ReadyFunc: cmReady, StopTimeout: 20 * time.Second},
	}
	// The server's own admin kubeconfig now (the deployer uses it), the
	// user's once the scheduler is ready too.
	if err := writeAdminKubeconfig(cp, "", mode); err != nil {
		return err
	}
	deployer, err := newDeploy(opts, cp, serverDir)
	if err != nil {
		return err
	}
	// Built now, before the control plane starts: see localstorage.New.
	var storage *localstorage.Controller
	if !slices.Contains(opts.Disable, "local-storage") {
		if storage, err = localstorage.NewForConfig(ctx, deployer.Config); err != nil {
			return err
		}
	}
	var startNode func(ctx context.Context) (string, error)
	cmStarted := make(chan struct{})
	if !opts.DisableAgent {
		startNode = func(ctx context.Context) (string, error) {
			return startOwnNode(ctx, nodeMgr, prep, agent.Setup{
				DataDir:   dataDir,
				Options:   opts.Node,
				Server:    cp.loopbackURL(),
				Token:     serverToken,
				DefaultIP: nodeIP,
				BeforeKubelet: func(ctx context.Context) error {
					select {
					case <-cmStarted:
					case <-ctx.Done():
						return ctx.Err()
					}
					if cmElection != nil && cmElection.Standby() {
						return nil // another server's controller-manager runs the controllers
					}
					return controllersBuilt(ctx, argPort(cmArgs, controllerManagerPort))
				},
			})
		}
	}
	own := startNodeEarly(ctx, readyClient, cp.loopbackURL(), nodeRBAC(deployer), startNode)
	defer own.stop()
	if err := mgr.Start(ctx, components...); err != nil {
		if ctx.Err() != nil {
			log.Info("shutdown requested during start")
			return nil
		}
		return err
	}
	close(cmStarted)
	if err := own.rbacApplied(ctx); err != nil {
		if ctx.Err() != nil {
			log.Info("shutdown requested during start")
			return nil
		}
		return fmt.Errorf("manifests: %w", err)
	}
	startRest := func(ctx context.Context) error {
		if err := mgr.Start(ctx, &component.Runner{ComponentName: "kube-scheduler", Run: schedRun, ReadyFunc: schedReady, StopTimeout: 20 * time.Second}); err != nil {
			return err
		}
		if err := writeAdminKubeconfig(cp, opts.WriteKubeconfig, mode); err != nil {
			return err
		}
		if !opts.DisableAgent {
			// The other manifests and the packaged components after the
			// node's start (within a bound): their CRDs, OpenAPI rebuilds
			// and first objects cost CPU that on a small machine slowed
			// the node's way to Ready, and their pods cannot run before.
			select {
			case <-own.done:
			case <-time.After(packagedAfterNodeMax):
				log.Infof("the node has not started in %s; applying the manifests anyway", packagedAfterNodeMax)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := startDeploy(ctx, mgr, opts, cp, serverDir, shared, identity, deployer, storage); err != nil {
			return err
		}
		log.Infof("control plane ready in %s; admin kubeconfig: %s", time.Since(begin).Round(time.Millisecond), opts.WriteKubeconfig)
		return nil
	}
	restCtx, cancelRest := context.WithCancel(ctx)
	defer cancelRest()
	rest := make(chan error, 1)
	go func() { rest <- startRest(restCtx) }()
	var nodeErr error
	if !opts.DisableAgent {
		var name string
		if name, nodeErr = own.wait(); nodeErr == nil {
			log.Infof("node %s started in %s", name, time.Since(begin).Round(time.Millisecond))
			if useEtcd {
				go markServerNode(ctx, join.Client, name, member)
			}
		} else {
			cancelRest()
		}
	}
	restErr := <-rest
	if ctx.Err() != nil {
		log.Info("shutdown requested during start")
		return nil
	}
	if nodeErr != nil {
		return fmt.Errorf("node: %w", nodeErr)
	}
	if restErr != nil {
		return restErr
	}
	if useEtcd {
		if err := startEtcdControllers(ctx, mgr, opts, join.Client, dsClient); err != nil {
			return err
		}
	}

	// Starting peaks at about twice the heap an idle server keeps; the Go
	// runtime would give it back to the OS only over minutes.
	debug.FreeOSMemory()
	go idle.Run(ctx, log.Infof)
	return component.Wait(ctx, mgr, nodeMgr)
}

// preparation is the server's own node preparing its runtime in the
// background.
type preparation struct {
	cancel   context.CancelFunc
	done     chan struct{}
	prepared *agent.Prepared
	err      error
}

// startPrepare prepares the server's own node on mgr in the background,
// unless the server runs no node, joins another server (its node then
// prepares after the join) or only resets etcd's membership.
func startPrepare(ctx context.Context, mgr *component.Manager, opts *options.Server, dataDir string) *preparation {
	ctx, cancel := context.WithCancel(ctx)
	p := &preparation{cancel: cancel, done: make(chan struct{})}
	if opts.DisableAgent || opts.Server != "" || opts.ClusterReset {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		p.prepared, p.err = agent.Prepare(ctx, mgr, agent.Runtime{
			DataDir:       dataDir,
			ClusterCIDR:   opts.ClusterCIDR,
			ServiceCIDR:   opts.ServiceCIDR,
			KubeProxyArgs: opts.Node.KubeProxyArgs,
		})
	}()
	return p
}

// wait returns the prepared runtime (nil if nothing was prepared).
func (p *preparation) wait() (*agent.Prepared, error) {
	<-p.done
	return p.prepared, p.err
}

// packagedAfterNodeMax bounds how long the packaged components wait for
// the server's own node to start (it starts within seconds).
const packagedAfterNodeMax = 15 * time.Second

// controllersBuilt waits until the controller-manager has built its
// controllers, which it reports by adding their health checks (all at once,
// after the last one is built; the service-account token controller is
// always among them). See agent.Setup.BeforeKubelet for why.
func controllersBuilt(ctx context.Context, port int) error {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := insecureHealthClient()
	err := component.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL(port)+"?verbose", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "serviceaccount-token-controller") {
			return errors.New("controllers not built yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wait for kube-controller-manager's controllers before starting the kubelet: %w", err)
	}
	log.Infof("kube-controller-manager's controllers are built (%s); the kubelet may start", time.Since(begin).Round(time.Millisecond))
	return nil
}

// sharedDatastore reports whether other servers may use the same
// datastore: an external SQL database (SQLite and bolt files are this
// server's alone).
func sharedDatastore(endpoint string) bool {
	return endpoint != "" && !strings.HasPrefix(endpoint, "sqlite://") && !strings.HasPrefix(endpoint, "bolt://")
}

func hostnameOr(fallback string) string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return fallback
}

// readToken returns a token given as a flag or in a file (at most one is set).
func readToken(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	return token.ReadFile(file)
}

// newSupervisor is the join API: it signs node certificates with the
// cluster CAs and reads tokens and node claims as the admin.
func newSupervisor(cp controlPlane, opts *options.Server, serverToken, agentToken token.Token, serverCAPEM []byte) (*supervisor.Server, error) {
	t := cp.p.tls
	serverCA, err := pki.LoadCA(t.ServerCA)
	if err != nil {
		return nil, err
	}
	clientCA, err := pki.LoadCA(t.ClientCA)
	if err != nil {
		return nil, err
	}
	clientCAPEM, err := os.ReadFile(t.ClientCA.Cert)
	if err != nil {
		return nil, err
	}
	cfg := &rest.Config{
		Host:            cp.loopbackURL(),
		TLSClientConfig: rest.TLSClientConfig{CAFile: t.ServerCA.Cert, CertFile: t.Admin.Cert, KeyFile: t.Admin.Key},
		Timeout:         10 * time.Second,
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &supervisor.Server{
		ServerCA:    serverCA,
		ClientCA:    clientCA,
		ServerCAPEM: serverCAPEM,
		ClientCAPEM: clientCAPEM,
		ServerToken: serverToken,
		AgentToken:  agentToken,
		Client:      client,
		Config: joinapi.Config{
			Servers:        []string{"https://" + net.JoinHostPort(cp.advertiseAddress.String(), strconv.Itoa(cp.port))},
			ClusterCIDR:    opts.ClusterCIDR,
			ServiceCIDR:    opts.ServiceCIDR,
			ClusterDNS:     opts.ClusterDNS,
			ClusterDomain:  opts.ClusterDomain,
			FlannelBackend: opts.FlannelBackend,
		},
	}, nil
}

// newDeploy writes the packaged manifests into the manifests folder and the
// static charts, and returns the folder's controller.
func newDeploy(opts *options.Server, cp controlPlane, serverDir string) (*deploy.Controller, error) {
	dir := filepath.Join(serverDir, "manifests")
	caPEM, err := os.ReadFile(cp.p.tls.ServerCA.Cert)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{
		"CLUSTER_DNS":    opts.ClusterDNS,
		"CLUSTER_DOMAIN": opts.ClusterDomain,
		"ADVERTISE_IP":   cp.advertiseAddress.String(),
		"METRICS_PORT":   strconv.Itoa(metricsServerPort),
		"SERVER_CA":      base64.StdEncoding.EncodeToString(caPEM),
	}
	if err := charts.Write(dir, opts.Disable, vars); err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	if err := charts.WriteStatic(staticChartsDir(serverDir)); err != nil {
		return nil, fmt.Errorf("static charts: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.p.adminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	return &deploy.Controller{Dir: dir, Config: cfg, Required: charts.Packaged}, nil
}

func staticChartsDir(serverDir string) string { return filepath.Join(serverDir, "static", "charts") }

// startDeploy applies the manifests folder once (the server's own files
// must apply), then starts its controller, which keeps applying it in the
// background, and the in-process packaged components on mgr.
func startDeploy(ctx context.Context, mgr *component.Manager, opts *options.Server, cp controlPlane, serverDir string, shared bool, identity string, ctrl *deploy.Controller, storage *localstorage.Controller) error {
	cfg, staticCharts := ctrl.Config, staticChartsDir(serverDir)
	if err := ctrl.Sync(ctx); err != nil {
		return fmt.Errorf("manifests: %w", err)
	}
	components := []component.Component{&component.Runner{ComponentName: "deploy", Run: ctrl.Run, StopTimeout: 5 * time.Second}}
	// The packaged components in this process: each is optional, so one
	// that fails stops alone and the cluster runs on.
	metricsArgs := cp.metricsServerArgs()
	helmController := &helm.Controller{Config: cfg, Kubeconfig: cp.p.adminKubeconfig,
		StaticDir: staticCharts, CacheDir: filepath.Join(serverDir, "helm")}
	for _, c := range []struct {
		name string
		on   bool
		run  func(context.Context) error
	}{
		{"metrics-server", !slices.Contains(opts.Disable, "metrics-server"), func(ctx context.Context) error {
			return runMetricsServer(ctx, cfg, metricsArgs, cp.advertiseAddress, metricsServerPort, serverID(identity))
		}},
		{"helm", !opts.DisableHelm, helmController.Run},
		{"local-storage", storage != nil, func(ctx context.Context) error { return storage.Run(ctx) }},
		{"servicelb", !slices.Contains(opts.Disable, "servicelb"), func(ctx context.Context) error { return servicelb.Run(ctx, cfg) }},
	} {
		if !c.on {
			continue
		}
		r := &component.Runner{ComponentName: c.name, Run: c.run, StopTimeout: 5 * time.Second, Optional: true}
		// metrics-server serves on every server; the controllers act once.
		if shared && c.name != "metrics-server" {
			e := &elected{lease: "cluster-" + c.name, identity: identity, kubeconfig: cp.p.adminKubeconfig, run: c.run}
			r.Run, r.ReadyFunc = e.Run, e.Ready
		}
		components = append(components, r)
	}
	return mgr.Start(ctx, components...)
}

// writeControlPlaneFiles writes the component kubeconfigs and the
// authentication configuration, all derived from the PKI.
func writeControlPlaneFiles(cp controlPlane) error {
	t := cp.p.tls
	for _, kc := range []struct {
		path string
		pair pki.Pair
	}{
		{cp.p.schedulerKubeconfig, t.Scheduler},
		{cp.p.controllerKubeconfig, t.ControllerMgr},
		{cp.p.metricsKubeconfig, t.MetricsServer},
	} {
		if err := os.MkdirAll(filepath.Dir(kc.path), 0o700); err != nil {
			return err
		}
		spec := kubeconfig.Spec{Server: cp.loopbackURL(), CAFile: t.ServerCA.Cert, CertFile: kc.pair.Cert, KeyFile: kc.pair.Key}
		if err := kubeconfig.Write(kc.path, 0o600, spec); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(cp.p.authnConfig), 0o700); err != nil {
		return err
	}
	return fileutil.WriteAtomic(cp.p.authnConfig, []byte(authenticationConfig), 0o600)
}

// writeAdminKubeconfig writes the admin kubeconfig into the data dir and to
// the user's --write-kubeconfig path.
func writeAdminKubeconfig(cp controlPlane, userPath string, mode os.FileMode) error {
	t := cp.p.tls
	spec := kubeconfig.Spec{Server: cp.loopbackURL(), CAFile: t.ServerCA.Cert, CertFile: t.Admin.Cert, KeyFile: t.Admin.Key, Embed: true}
	if err := kubeconfig.Write(cp.p.adminKubeconfig, 0o600, spec); err != nil {
		return err
	}
	if userPath == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(userPath), 0o755); err != nil {
		return fmt.Errorf("--write-kubeconfig: %w", err)
	}
	if err := kubeconfig.Write(userPath, mode, spec); err != nil {
		return fmt.Errorf("--write-kubeconfig: %w", err)
	}
	return nil
}

// checks are what the server needs of this host: free ports for the
// control plane and, unless --disable-agent, everything a node needs.
func checks(opts *options.Server) preflight.Options {
	cp := controlPlane{}
	o := preflight.Options{
		DataDir:  opts.DataDir,
		Node:     !opts.DisableAgent,
		NFTables: agent.ProxyMode(opts.KubeProxyArgs) == "nftables",
		Ports: []preflight.Port{
			{Address: net.JoinHostPort(opts.BindAddress, strconv.Itoa(opts.HTTPSListenPort)), User: "kube-apiserver", Flag: "--https-listen-port"},
			{Address: "127.0.0.1:" + strconv.Itoa(argPort(cp.controllerManagerArgs(opts.KubeControllerManagerArgs), controllerManagerPort)), User: "kube-controller-manager", Flag: "--kube-controller-manager-arg=secure-port=…"},
			{Address: "127.0.0.1:" + strconv.Itoa(argPort(cp.schedulerArgs(opts.KubeSchedulerArgs), schedulerPort)), User: "kube-scheduler", Flag: "--kube-scheduler-arg=secure-port=…"},
		},
	}
	if opts.DatastoreEndpoint == "" && (opts.ClusterInit || opts.Server != "" || datastore.HasMember(etcdDir(opts.ServerDir()))) && !opts.ClusterReset {
		host := opts.AdvertiseAddress
		if host == "" {
			host = "0.0.0.0"
		}
		for _, port := range []int{datastore.EtcdClientPort, datastore.EtcdPeerPort} {
			o.Ports = append(o.Ports, preflight.Port{Address: net.JoinHostPort(host, strconv.Itoa(port)), User: "etcd"})
		}
	}
	if !slices.Contains(opts.Disable, "metrics-server") {
		o.Ports = append(o.Ports, preflight.Port{Address: "0.0.0.0:" + strconv.Itoa(metricsServerPort), User: "metrics-server", Flag: "--disable metrics-server"})
	}
	if o.Node {
		o.Ports = append(o.Ports, preflight.NodePorts...)
	}
	return o
}

// chooseNodeIP returns --advertise-address, or the address of the interface
// holding the default route.
func chooseNodeIP(advertise string) (net.IP, error) {
	if advertise != "" {
		return net.ParseIP(advertise), nil
	}
	ip, err := utilnet.ChooseHostInterface()
	if err != nil {
		return nil, fmt.Errorf("cannot find this host's IP address (%v); set --advertise-address", err)
	}
	return ip, nil
}

func healthClient(caFile string) (*http.Client, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}, nil
}

// insecureHealthClient is for the controller-manager and scheduler, which
// serve health on loopback with self-signed in-memory certificates.
func insecureHealthClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health probe only
	}
}

// argPort reads --secure-port from rendered args (the user may override it).
func argPort(args []string, def int) int {
	if v, ok := argv.Value(args, "secure-port"); ok {
		if p, err := strconv.Atoi(v); err == nil {
			return p
		}
	}
	return def
}
