package server

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/internal/argv"
	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/server/pki"
)

// Fixed loopback ports of the controller-manager and scheduler health
// servers, and metrics-server's port on the server's address.
const (
	controllerManagerPort = 10257
	schedulerPort         = 10259
	metricsServerPort     = 10251
)

// paths are the generated files the daemons read.
type paths struct {
	tls                  pki.Files
	kineSocket           string
	authnConfig          string
	schedulerKubeconfig  string
	controllerKubeconfig string
	metricsKubeconfig    string
	adminKubeconfig      string // <data-dir>/server/cred/admin.kubeconfig
}

func newPaths(serverDir string) paths {
	cred := filepath.Join(serverDir, "cred")
	return paths{
		tls:                  pki.Layout(filepath.Join(serverDir, "tls")),
		kineSocket:           filepath.Join(serverDir, "kine.sock"),
		authnConfig:          filepath.Join(serverDir, "etc", "authentication-config.yaml"),
		schedulerKubeconfig:  filepath.Join(cred, "scheduler.kubeconfig"),
		controllerKubeconfig: filepath.Join(cred, "controller.kubeconfig"),
		metricsKubeconfig:    filepath.Join(cred, "metrics-server.kubeconfig"),
		adminKubeconfig:      filepath.Join(cred, "admin.kubeconfig"),
	}
}

// authenticationConfig lets anonymous requests reach only the health
// endpoints and the join API (which checks the node's token itself, and
// which charts/join-rbac.yaml opens); everything else needs a credential.
const authenticationConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
  - path: ` + joinapi.CACertsPath + `
  - path: ` + joinapi.JoinPath + `
  - path: ` + joinapi.ServerJoinPath + `
`

// controlPlane is the resolved configuration the daemons' flags come from.
type controlPlane struct {
	bindAddress      string
	advertiseAddress net.IP
	port             int
	clusterCIDR      string
	serviceCIDR      string
	clusterDomain    string
	etcdServers      []string
	etcdTLS          *datastore.EtcdTLS // embedded etcd's client credentials; nil for kine
	sharedKine       bool               // kine on a database other servers use too
	p                paths
}

// soleServer: no other server can share this datastore (kine on SQLite or
// bbolt); with embedded etcd, others may join later.
func (c controlPlane) soleServer() bool {
	return !c.sharedKine && c.etcdTLS == nil
}

func (c controlPlane) issuer() string {
	return "https://kubernetes.default.svc." + c.clusterDomain
}

// loopbackURL is how processes on this host reach the apiserver.
func (c controlPlane) loopbackURL() string {
	host := "127.0.0.1"
	if ip := net.ParseIP(c.bindAddress); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		host = ip.String()
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(c.port))
}

func (c controlPlane) apiServerArgs(extra []string) []string {
	t := c.p.tls
	m := map[string]string{
		"advertise-address":                  c.advertiseAddress.String(),
		"allow-privileged":                   "true",
		"api-audiences":                      c.issuer() + ",cluster",
		"authentication-config":              c.p.authnConfig,
		"authorization-mode":                 "Node,RBAC",
		"bind-address":                       c.bindAddress,
		"cert-dir":                           filepath.Join(t.Dir, "temporary-certs"),
		"client-ca-file":                     t.ClientCA.Cert,
		"enable-admission-plugins":           "NodeRestriction",
		"enable-aggregator-routing":          "true",
		"etcd-servers":                       strings.Join(c.etcdServers, ","),
		"kubelet-certificate-authority":      t.ServerCA.Cert,
		"kubelet-client-certificate":         t.APIServerKubelet.Cert,
		"kubelet-client-key":                 t.APIServerKubelet.Key,
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"profiling":                          "false",
		"proxy-client-cert-file":             t.AuthProxy.Cert,
		"proxy-client-key-file":              t.AuthProxy.Key,
		"requestheader-allowed-names":        "system:auth-proxy",
		"requestheader-client-ca-file":       t.RequestHeaderCA.Cert,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"secure-port":                        strconv.Itoa(c.port),
		"service-account-issuer":             c.issuer(),
		"service-account-key-file":           t.ServiceAccountKey,
		"service-account-signing-key-file":   t.ServiceAccountKey,
		"service-cluster-ip-range":           c.serviceCIDR,
		"service-node-port-range":            "30000-32767",
		// Close watches on shutdown instead of waiting out the 60s request
		// timeout: the in-process kubelet's watches never end by themselves.
		"shutdown-watch-termination-grace-period": "2s",
		"storage-backend":                         "etcd3",
		"tls-cert-file":                           t.APIServerServing.Cert,
		"tls-private-key-file":                    t.APIServerServing.Key,
	}
	if c.etcdTLS != nil {
		m["etcd-cafile"], m["etcd-certfile"], m["etcd-keyfile"] = c.etcdTLS.CA, c.etcdTLS.ClientCert, c.etcdTLS.ClientKey
	}
	if c.soleServer() {
		// One server on its own datastore: no other apiserver to find, so
		// none of the leases that exist for that are renewed every 10 s
		// (each renewal is a datastore write, ~20 kB of SQLite WAL): the
		// kubernetes Endpoints are written once (master-count), and neither
		// the identity Lease nor the peer-proxy Lease exists. Servers on
		// etcd or a shared database keep upstream's defaults.
		m["endpoint-reconciler-type"] = "master-count"
		// Counting every resource's objects each minute is ~55 datastore
		// reads a minute on an idle cluster; the counts feed only the apiserver_storage_objects metric
		// and the cost estimate of list requests for priority and fairness,
		// which then charges every list the minimum, as it does for
		// aggregated APIs. The object sizes that estimate would use
		// (SizeBasedListCostEstimate) are then read by nothing, yet each
		// resource's estimator still asks the datastore for its revision
		// every minute or so: another ~60 reads a minute.
		m["etcd-count-metric-poll-period"] = "0"
		m["feature-gates"] = "APIServerIdentity=false,SizeBasedListCostEstimate=false,UnknownVersionInteroperabilityProxy=false"
	}
	if c.sharedKine {
		// kine sends a watch progress notification only while its poll loop
		// has caught up with the database; another server writing to the same
		// database can keep it behind for a long while at this server's start,
		// and streaming lists (WatchList) wait for such a notification: the
		// informers behind admission and the service-IP repair check never
		// sync, and the apiserver gives up after a minute. Without WatchList,
		// informers list, and a list whose cache is not fresh within 3 s is
		// served from the datastore.
		m["feature-gates"] = "WatchList=false"
	}
	return argv.Merge(m, extra)
}

func (c controlPlane) controllerManagerArgs(extra []string) []string {
	t := c.p.tls
	signer := func(prefix string, ca pki.Pair, m map[string]string) {
		m["cluster-signing-"+prefix+"-cert-file"] = ca.Cert
		m["cluster-signing-"+prefix+"-key-file"] = ca.Key
	}
	m := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": c.p.controllerKubeconfig,
		"authorization-kubeconfig":  c.p.controllerKubeconfig,
		"bind-address":              "127.0.0.1",
		"cluster-cidr":              c.clusterCIDR,
		"configure-cloud-routes":    "false",
		"controllers":               "*,tokencleaner",
		"kubeconfig":                c.p.controllerKubeconfig,
		// Upstream's 20/s (burst 30) throttles the controller-manager's own
		// start: building its controllers takes three requests each on a
		// fresh datastore (get, get namespace, create service account) and
		// waited ~3 s on the limiter, holding back the node's kubelet
		// (agent.Setup.BeforeKubelet). The apiserver's priority and
		// fairness still bounds what the controllers may take.
		"kube-api-burst": "200",
		"kube-api-qps":   "100",
		"leader-elect":   "false",
		// Kubelets renew their node Lease every 30 s here, not every 10 s
		// (agent/kubelet): three missed renewals, not five, make a node
		// NotReady.
		"node-monitor-grace-period":        "90s",
		"profiling":                        "false",
		"root-ca-file":                     t.ServerCA.Cert,
		"secure-port":                      strconv.Itoa(controllerManagerPort),
		"service-account-private-key-file": t.ServiceAccountKey,
		"service-cluster-ip-range":         c.serviceCIDR,
		"terminated-pod-gc-threshold":      "1000",
		"tls-cert-file":                    t.ControllerMgrServing.Cert,
		"tls-private-key-file":             t.ControllerMgrServing.Key,
		"use-service-account-credentials":  "true",
	}
	signer("kube-apiserver-client", t.ClientCA, m)
	signer("kubelet-client", t.ClientCA, m)
	signer("kubelet-serving", t.ServerCA, m)
	signer("legacy-unknown", t.ServerCA, m)
	return argv.Merge(m, extra)
}

func (c controlPlane) schedulerArgs(extra []string) []string {
	return argv.Merge(map[string]string{
		"authentication-kubeconfig": c.p.schedulerKubeconfig,
		"authorization-kubeconfig":  c.p.schedulerKubeconfig,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                c.p.schedulerKubeconfig,
		"leader-elect":              "false",
		"profiling":                 "false",
		"secure-port":               strconv.Itoa(schedulerPort),
		"tls-cert-file":             c.p.tls.SchedulerServing.Cert,
		"tls-private-key-file":      c.p.tls.SchedulerServing.Key,
	}, extra)
}

// metricsServerArgs run metrics-server as system:metrics-server, serving
// the aggregated metrics API on the advertise address with a certificate
// from the server CA, and scraping kubelets whose serving certificates
// the same CA signed.
func (c controlPlane) metricsServerArgs() []string {
	t := c.p.tls
	return argv.Merge(map[string]string{
		"bind-address":                    c.advertiseAddress.String(),
		"secure-port":                     strconv.Itoa(metricsServerPort),
		"tls-cert-file":                   t.MetricsServing.Cert,
		"tls-private-key-file":            t.MetricsServing.Key,
		"kubeconfig":                      c.p.metricsKubeconfig,
		"authentication-kubeconfig":       c.p.metricsKubeconfig,
		"authorization-kubeconfig":        c.p.metricsKubeconfig,
		"kubelet-certificate-authority":   t.ServerCA.Cert,
		"kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
		"kubelet-use-node-status-port":    "true",
		// metrics-server's own default (k3s: 15s): every scrape makes each
		// kubelet collect every container's stats through containerd.
		"metric-resolution": "60s",
		"profiling":         "false",
	}, nil)
}

// healthURL is a daemon's loopback health endpoint.
func healthURL(port int) string {
	return fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
}
