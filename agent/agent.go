package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cluster-io/cluster/agent/join"
	"github.com/cluster-io/cluster/agent/loadbalancer"
	"github.com/cluster-io/cluster/agent/options"
	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/internal/datadir"
	"github.com/cluster-io/cluster/internal/memtrim"
	"github.com/cluster-io/cluster/internal/preflight"
	"github.com/cluster-io/cluster/internal/token"
	"github.com/cluster-io/cluster/version"
)

// ExternalIPLabel carries --node-external-ip (the kubelet cannot report an
// external address without a cloud provider; the service LB reads it).
const ExternalIPLabel = "node.cluster.io/external-ip"

// DefaultDataDir is where a node keeps its state unless told otherwise.
const DefaultDataDir = options.DefaultDataDir

// Setup is how a node joins and what it is: the same for an agent and for
// the server's own node, which joins its server over loopback.
type Setup struct {
	DataDir string // absolute
	Options options.Node
	Server  string // https URL of the server to join
	Token   token.Token
	// DefaultIP is the node IP when --node-ip is not given; nil means the
	// address of the interface holding the default route.
	DefaultIP net.IP
	// LBServerPort is the loopback port of the load balancer the node's
	// components reach the servers through; 0 means none (the server's own
	// node talks to its apiserver directly).
	LBServerPort int
	// BeforeKubelet, if set, runs (and must succeed) right before the
	// kubelet starts. The server's own node needs it: upstream's CSI volume
	// plugin keeps the node it serves in a package-level variable, which
	// every Init overwrites, and the controller-manager's controllers Init
	// it too (with no node). In one process the kubelet's Init must come
	// last, or its CSINode never initializes and the node stays NotReady.
	BeforeKubelet func(ctx context.Context) error
	// Prepared, if set, is the node's runtime, prepared before the join
	// (the server's own node does that while its control plane starts).
	Prepared *Prepared
}

// StartNode joins the server and starts the node's components on mgr. A
// refusal that retrying cannot change is a *join.Refused.
func StartNode(ctx context.Context, mgr *component.Manager, s Setup) (string, error) {
	o := s.Options
	name := NodeName(o.NodeName)
	ip := s.DefaultIP
	if o.NodeIP != "" {
		ip = net.ParseIP(o.NodeIP)
	}
	if ip == nil {
		var err error
		if ip, err = utilnet.ChooseHostInterface(); err != nil {
			return "", fmt.Errorf("cannot find this host's IP address (%v); set --node-ip", err)
		}
	}
	ips := []net.IP{ip}
	var external net.IP
	if o.NodeExternalIP != "" {
		external = net.ParseIP(o.NodeExternalIP)
		ips = append(ips, external)
	}
	p := Layout(s.DataDir)
	// An agent remembers every server it learned: restarted while the
	// server it was given is down, it joins through another.
	serversFile := filepath.Join(p.Agent, "etc", "servers")
	var remembered []string
	if s.LBServerPort != 0 {
		remembered = loadbalancer.ReadServers(serversFile)
	}
	joined, err := join.Join(ctx, join.Config{Server: s.Server, Fallbacks: remembered, Token: s.Token, NodeName: name, NodeIPs: ips, AgentDir: p.Agent})
	if err != nil {
		return "", err
	}
	log.Infof("joined %s as node %s (%s)", joined.Server, name, ip)

	apiURL := s.Server
	var lb *loadbalancer.LoadBalancer
	if s.LBServerPort != 0 {
		lb, err = loadbalancer.New(s.LBServerPort, append(append([]string{s.Server}, joined.Config.Servers...), remembered...))
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(serversFile), 0o700); err != nil {
			return "", err
		}
		lb.StateFile = serversFile
		if err := mgr.Start(ctx, lb); err != nil {
			return "", err
		}
		apiURL = lb.URL()
	}
	labels := slices.Clone(o.NodeLabels)
	if external != nil {
		// What k3s does too: the kubelet has no flag for it.
		labels = append(labels, ExternalIPLabel+"="+external.String())
	}
	cfg := joined.Config
	err = Start(ctx, mgr, Node{
		DataDir:        s.DataDir,
		Name:           name,
		IP:             ip,
		ExternalIP:     external,
		Labels:         labels,
		Taints:         o.NodeTaints,
		ClusterCIDR:    cfg.ClusterCIDR,
		ServiceCIDR:    cfg.ServiceCIDR,
		ClusterDNS:     cfg.ClusterDNS,
		ClusterDomain:  cfg.ClusterDomain,
		FlannelBackend: cfg.FlannelBackend,
		KubeletArgs:    o.KubeletArgs,
		KubeProxyArgs:  o.KubeProxyArgs,
		ResolvConf:     o.ResolvConf,
		APIServerURL:   apiURL,
		Creds:          joined.Files,
		BeforeKubelet:  s.BeforeKubelet,
		Prepared:       s.Prepared,
	})
	if err != nil {
		return "", err
	}
	if lb != nil {
		if c, err := clientFor(p.KubeProxyKubecfg); err == nil {
			go lb.FollowServers(ctx, c, 30*time.Second)
		}
	}
	return name, nil
}

// Run runs `cluster agent` until ctx ends or a component fails. o must be
// validated already.
func Run(ctx context.Context, o *options.Agent) error {
	begin := time.Now()
	log.Infof("starting %s", version.String())
	tok, err := o.JoinToken()
	if err != nil {
		return err
	}
	idle, err := memtrim.IdleFromEnv(memtrim.NodeIdleGOGC)
	if err != nil {
		return err
	}
	checks := preflight.Options{
		DataDir:  o.DataDir,
		Node:     true,
		NFTables: ProxyMode(o.KubeProxyArgs) == "nftables",
		Ports:    append([]preflight.Port{{Address: "127.0.0.1:" + strconv.Itoa(o.LBServerPort), User: "the agent's load balancer", Flag: "--lb-server-port"}}, preflight.NodePorts...),
	}
	if err := preflight.Check(checks, func(w string) { log.Warn(w) }); err != nil {
		return err
	}
	lock, err := datadir.Claim(o.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	dataDir, _ := filepath.Abs(o.DataDir)

	mgr := component.NewManager()
	defer func() {
		log.Info("stopping")
		if err := mgr.Stop(); err != nil {
			log.Warnf("stop: %v", err)
		}
	}()
	name, err := StartNode(ctx, mgr, Setup{
		DataDir:      dataDir,
		Options:      o.Node,
		Server:       strings.TrimSuffix(o.Server, "/"),
		Token:        tok,
		LBServerPort: o.LBServerPort,
	})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("shutdown requested during start")
			return nil
		}
		var refused *join.Refused
		if errors.As(err, &refused) {
			return err
		}
		return fmt.Errorf("node: %w", err)
	}
	log.Infof("node %s started in %s", name, time.Since(begin).Round(time.Millisecond))
	debug.FreeOSMemory() // the start's peak, given back now rather than over minutes
	go idle.Run(ctx, log.Infof)
	return mgr.Wait(ctx)
}

// NodeName is --node-name, or the hostname as a valid node name.
func NodeName(name string) string {
	if name != "" {
		return name
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return strings.ToLower(h)
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
