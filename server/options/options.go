// Package options defines `cluster server`'s settings: their flags (named as
// k3s names them), defaults, the CLUSTER_* environment and config file, and
// validation with errors a user can act on.
package options

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	agentoptions "github.com/cluster-io/cluster/agent/options"
	"github.com/cluster-io/cluster/charts"
	"github.com/cluster-io/cluster/internal/cliopts"
)

// Defaults shared with documentation and tests.
const (
	DefaultDataDir        = agentoptions.DefaultDataDir
	DefaultConfigFile     = agentoptions.DefaultConfigFile
	DefaultKubeconfig     = "/etc/cluster/kubeconfig.yaml"
	DefaultHTTPSPort      = 6443
	DefaultClusterCIDR    = "10.42.0.0/16"
	DefaultServiceCIDR    = "10.43.0.0/16"
	DefaultClusterDNS     = "10.43.0.10"
	DefaultClusterDomain  = "cluster.local"
	DefaultKubeconfigMode = "0600"
)

// FlannelBackends are the values --flannel-backend accepts.
var FlannelBackends = []string{"vxlan", "host-gw", "none"}

// Server holds every `cluster server` option.
type Server struct {
	ConfigFile          string
	DataDir             string
	BindAddress         string
	AdvertiseAddress    string
	HTTPSListenPort     int
	ClusterCIDR         string
	ServiceCIDR         string
	ClusterDNS          string
	ClusterDomain       string
	TLSSANs             []string
	Token               string
	TokenFile           string
	AgentToken          string
	AgentTokenFile      string
	DatastoreEndpoint   string
	ClusterInit         bool
	Server              string
	ClusterReset        bool
	ClusterResetRestore string
	EtcdSnapshots
	WriteKubeconfig     string
	WriteKubeconfigMode string
	DisableAgent        bool
	DisableHelm         bool
	Disable             []string
	FlannelBackend      string
	Debug               bool
	agentoptions.Node

	KubeAPIServerArgs         []string
	KubeSchedulerArgs         []string
	KubeControllerManagerArgs []string
}

// AddFlags registers the options on fs with their defaults.
func (o *Server) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.ConfigFile, "config", "c", DefaultConfigFile, "YAML file whose keys are these flags' names (env CLUSTER_CONFIG_FILE)")
	fs.StringVarP(&o.DataDir, "data-dir", "d", DefaultDataDir, "Folder to hold state")
	fs.StringVar(&o.BindAddress, "bind-address", "0.0.0.0", "kube-apiserver bind address")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "IP address the apiserver advertises to members of the cluster (default: node IP)")
	fs.IntVar(&o.HTTPSListenPort, "https-listen-port", DefaultHTTPSPort, "HTTPS listen port of the apiserver")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", DefaultClusterCIDR, "IPv4 network CIDR to use for pod IPs")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", DefaultServiceCIDR, "IPv4 network CIDR to use for service IPs")
	fs.StringVar(&o.ClusterDNS, "cluster-dns", DefaultClusterDNS, "IPv4 cluster IP for the DNS service; must be in --service-cidr")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", DefaultClusterDomain, "Cluster domain")
	fs.StringSliceVar(&o.TLSSANs, "tls-san", nil, "Additional hostname or IP as a Subject Alternative Name in the serving certificate (repeatable)")
	fs.StringVarP(&o.Token, "token", "t", "", "Shared secret used to join agents to the cluster (default: generated and kept in <data-dir>/server/token)")
	fs.StringVar(&o.TokenFile, "token-file", "", "File holding the token")
	fs.StringVar(&o.AgentToken, "agent-token", "", "Shared secret that joins agents but never servers (default: the server token; kept in <data-dir>/server/agent-token)")
	fs.StringVar(&o.AgentTokenFile, "agent-token-file", "", "File holding the agent token")
	fs.StringVar(&o.DatastoreEndpoint, "datastore-endpoint", "", "kine datastore: empty for SQLite at <data-dir>/server/db/state.db, or sqlite://, bolt:///path/state.bolt, postgres://, mysql:// DSN")
	fs.BoolVar(&o.ClusterInit, "cluster-init", false, "Run embedded etcd instead of kine/SQLite, so that more servers can join (--server); an existing SQLite cluster is migrated into it")
	fs.StringVarP(&o.Server, "server", "s", "", "Join the embedded-etcd cluster of this server, https://HOST:6443, with its server token (env CLUSTER_URL)")
	fs.BoolVar(&o.ClusterReset, "cluster-reset", false, "Make this server's etcd member a cluster of its own (lost quorum), then exit; restart without the flag")
	fs.StringVar(&o.ClusterResetRestore, "cluster-reset-restore-path", "", "With --cluster-reset: restore this etcd snapshot file first")
	o.EtcdSnapshots.AddFlags(fs)
	fs.StringVarP(&o.WriteKubeconfig, "write-kubeconfig", "o", DefaultKubeconfig, "Write the admin kubeconfig to this file")
	fs.StringVar(&o.WriteKubeconfigMode, "write-kubeconfig-mode", DefaultKubeconfigMode, "File mode of the admin kubeconfig, octal (e.g. 0644)")
	fs.BoolVar(&o.DisableAgent, "disable-agent", false, "Do not run the node (containerd, kubelet, …) in this process")
	fs.BoolVar(&o.DisableHelm, "disable-helm-controller", false, "Do not install HelmChart resources (helm.cattle.io/v1) with the in-process helm")
	fs.StringSliceVar(&o.Disable, "disable", nil, "Packaged components not to deploy (and to remove if deployed): "+strings.Join(charts.ComponentNames(), ", "))
	fs.StringVar(&o.FlannelBackend, "flannel-backend", "vxlan", "Pod network backend of every node: "+strings.Join(FlannelBackends, ", ")+" (none: bring your own CNI)")
	o.Node.AddFlags(fs)
	fs.BoolVar(&o.Debug, "debug", false, "Debug logging")
	fs.StringArrayVar(&o.KubeAPIServerArgs, "kube-apiserver-arg", nil, "Extra flag for kube-apiserver, as name=value (repeatable)")
	fs.StringArrayVar(&o.KubeSchedulerArgs, "kube-scheduler-arg", nil, "Extra flag for kube-scheduler, as name=value (repeatable)")
	fs.StringArrayVar(&o.KubeControllerManagerArgs, "kube-controller-manager-arg", nil, "Extra flag for kube-controller-manager, as name=value (repeatable)")
}

// Load fills the options not given on the command line from CLUSTER_*
// variables and the config file. The config file itself may be named by
// --config or CLUSTER_CONFIG_FILE.
func (o *Server) Load(cmd *cobra.Command, getenv func(string) string) error {
	return cliopts.Load(cmd.Flags(), &o.ConfigFile, getenv, map[string]string{"server": "CLUSTER_URL"})
}

// Validate checks the options and returns the first problem as an error a
// user can act on. It reads the token file but changes nothing on disk.
func (o *Server) Validate() error {
	if o.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if ip := net.ParseIP(o.BindAddress); ip == nil {
		return fmt.Errorf("--bind-address %q is not an IP address", o.BindAddress)
	}
	if o.AdvertiseAddress != "" {
		ip := net.ParseIP(o.AdvertiseAddress)
		if ip == nil {
			return fmt.Errorf("--advertise-address %q is not an IP address", o.AdvertiseAddress)
		}
		if ip.IsLoopback() || ip.IsUnspecified() {
			return fmt.Errorf("--advertise-address %s must be an address other nodes can reach, not loopback or unspecified", o.AdvertiseAddress)
		}
	}
	if o.HTTPSListenPort < 1 || o.HTTPSListenPort > 65535 {
		return fmt.Errorf("--https-listen-port %d is out of range 1-65535", o.HTTPSListenPort)
	}
	clusterNet, err := parseCIDR("--cluster-cidr", o.ClusterCIDR)
	if err != nil {
		return err
	}
	serviceNet, err := parseCIDR("--service-cidr", o.ServiceCIDR)
	if err != nil {
		return err
	}
	if clusterNet.Contains(serviceNet.IP) || serviceNet.Contains(clusterNet.IP) {
		return fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap", o.ClusterCIDR, o.ServiceCIDR)
	}
	dns := net.ParseIP(o.ClusterDNS)
	if dns == nil {
		return fmt.Errorf("--cluster-dns %q is not an IP address", o.ClusterDNS)
	}
	if !serviceNet.Contains(dns) {
		return fmt.Errorf("--cluster-dns %s is not inside --service-cidr %s", o.ClusterDNS, o.ServiceCIDR)
	}
	if o.ClusterDomain == "" || strings.ContainsAny(o.ClusterDomain, " /:") {
		return fmt.Errorf("--cluster-domain %q is not a DNS domain", o.ClusterDomain)
	}
	for _, san := range o.TLSSANs {
		if san == "" || strings.ContainsAny(san, " /") {
			return fmt.Errorf("--tls-san %q is neither a hostname nor an IP address", san)
		}
	}
	if err := o.Node.Validate(); err != nil {
		return err
	}
	if err := charts.ValidateDisable(o.Disable); err != nil {
		return err
	}
	if !slices.Contains(FlannelBackends, o.FlannelBackend) {
		return fmt.Errorf("--flannel-backend %q: want one of %s", o.FlannelBackend, strings.Join(FlannelBackends, ", "))
	}
	if o.Token != "" && o.TokenFile != "" {
		return errors.New("give either --token or --token-file, not both")
	}
	if o.AgentToken != "" && o.AgentTokenFile != "" {
		return errors.New("give either --agent-token or --agent-token-file, not both")
	}
	if o.WriteKubeconfigMode != "" {
		if _, err := o.KubeconfigMode(); err != nil {
			return err
		}
	}
	if o.DatastoreEndpoint != "" {
		if err := validateEndpoint(o.DatastoreEndpoint); err != nil {
			return err
		}
		switch {
		case o.ClusterInit:
			return errors.New("--cluster-init runs embedded etcd: it cannot be combined with --datastore-endpoint")
		case o.Server != "":
			return errors.New("--server joins an embedded-etcd cluster; servers on an external database share it instead: give them the same --datastore-endpoint and --token, without --server")
		case o.ClusterReset:
			return errors.New("--cluster-reset resets embedded etcd; it cannot be combined with --datastore-endpoint")
		}
	}
	if o.Server != "" {
		u, err := url.Parse(o.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("--server %q: want https://HOST:PORT, e.g. https://10.0.0.1:6443", o.Server)
		}
		if o.Token == "" && o.TokenFile == "" {
			return errors.New("--server needs the first server's token (--token or --token-file, from its <data-dir>/server/token)")
		}
	}
	if o.ClusterResetRestore != "" && !o.ClusterReset {
		return errors.New("--cluster-reset-restore-path needs --cluster-reset")
	}
	if err := o.EtcdSnapshots.Validate(); err != nil {
		return err
	}
	for flag, args := range map[string][]string{
		"--kube-apiserver-arg":          o.KubeAPIServerArgs,
		"--kube-scheduler-arg":          o.KubeSchedulerArgs,
		"--kube-controller-manager-arg": o.KubeControllerManagerArgs,
	} {
		for _, a := range args {
			if strings.TrimLeft(a, "-") == "" || strings.HasPrefix(strings.TrimLeft(a, "-"), "=") {
				return fmt.Errorf("%s %q: want name=value", flag, a)
			}
		}
	}
	return nil
}

// KubeconfigMode parses --write-kubeconfig-mode.
func (o *Server) KubeconfigMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(o.WriteKubeconfigMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("--write-kubeconfig-mode %q is not an octal file mode like 0600 or 0644", o.WriteKubeconfigMode)
	}
	return os.FileMode(m), nil
}

// ServerDir is <data-dir>/server.
func (o *Server) ServerDir() string { return filepath.Join(o.DataDir, "server") }

func parseCIDR(flag, s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a CIDR like 10.42.0.0/16", flag, s)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("%s %s: only IPv4 is supported so far", flag, s)
	}
	return n, nil
}

// validateEndpoint accepts what kine serves: sqlite://, postgres://, mysql://
// (and kine's http(s) endpoints for an external etcd).
func validateEndpoint(ep string) error {
	scheme, _, ok := strings.Cut(ep, "://")
	if !ok {
		return fmt.Errorf("--datastore-endpoint %q: want scheme://…, e.g. sqlite:///var/lib/cluster/server/db/state.db, postgres://user:pass@host:5432/db or mysql://user:pass@tcp(host:3306)/db", redact(ep))
	}
	switch scheme {
	case "bolt":
		if _, path, _ := strings.Cut(ep, "://"); path == "" {
			return fmt.Errorf("--datastore-endpoint %q: bolt needs a file, e.g. bolt:///var/lib/cluster/server/db/state.bolt", ep)
		}
		return nil
	case "sqlite", "postgres", "postgresql", "mysql", "http", "https", "unix", "unixs":
		return nil
	}
	return fmt.Errorf("--datastore-endpoint: unsupported scheme %q (use sqlite, bolt, postgres or mysql)", scheme)
}

// redact hides a password in a DSN so that errors never print it.
func redact(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	return "…" + s[at:]
}
