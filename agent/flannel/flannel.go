// Package flannel runs flannel (github.com/flannel-io/flannel) in-process
// with the Kubernetes subnet manager: this node's subnet is the podCIDR the
// controller-manager assigned. It writes the subnet file our flannel CNI
// plugin reads and the CNI conflist containerd loads.
package flannel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // registers "host-gw"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // registers "vxlan"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/nftables"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cluster-io/cluster/agent/netrules"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("flannel")

const annotationPrefix = "flannel.alpha.coreos.com"

// Config is one node's flannel.
type Config struct {
	Kubeconfig  string
	NodeName    string
	NodeIP      net.IP
	ClusterCIDR string
	Backend     string // vxlan or host-gw
	NFTables    bool   // masquerade/forward rules through nft instead of iptables
	// Dir holds net-conf.json and subnet.env.
	Dir string
	// CNIConfDir receives the conflist; CNIDataDir our plugin's state.
	CNIConfDir string
	CNIDataDir string
}

// SubnetFile is where this node's lease is written for the CNI plugin.
func (c Config) SubnetFile() string { return filepath.Join(c.Dir, "subnet.env") }

// WriteCNIConfig writes the conflist that chains our flannel plugin
// (bridge + host-local on the node's subnet), portmap and bandwidth.
func (c Config) WriteCNIConfig() error {
	conf := map[string]any{
		"name":       "cbr0",
		"cniVersion": "1.0.0",
		"plugins": []map[string]any{
			{
				"type":        "flannel",
				"subnetFile":  c.SubnetFile(),
				"dataDir":     filepath.Join(c.CNIDataDir, "flannel"),
				"ipamDataDir": filepath.Join(c.CNIDataDir, "networks"),
				"delegate":    map[string]any{"hairpinMode": true, "forceAddress": true, "isDefaultGateway": true},
			},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.CNIConfDir, 0o755); err != nil {
		return err
	}
	// Written in place: containerd reloads its CNI config on write events
	// and ignores files created (or renamed) into the directory.
	return os.WriteFile(filepath.Join(c.CNIConfDir, "10-flannel.conflist"), b, 0o644)
}

// Network is one node's flannel. Start begins its subnet manager, which
// needs only the node's credentials; Run, once the kubelet runs, sets up the
// node's subnet and then follows the other nodes' leases.
type Network struct {
	c      Config
	cancel context.CancelFunc
	done   chan struct{} // closed once sm or err is set
	sm     subnet.Manager
	err    error
}

// Start starts the subnet manager in the background. Its node informer is
// checked for sync only once a second (~1 s however fast the sync), so it
// starts before the kubelet: that second overlaps the kubelet's start and
// registration.
func Start(ctx context.Context, c Config) *Network {
	ctx, cancel := context.WithCancel(ctx)
	n := &Network{c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		n.sm, n.err = startSubnetManager(ctx, c)
	}()
	return n
}

// WriteCNIConfig writes the network's conflist (Config.WriteCNIConfig).
func (n *Network) WriteCNIConfig() error { return n.c.WriteCNIConfig() }

// Close stops the subnet manager of a Network that will not run.
func (n *Network) Close() { n.cancel() }

func startSubnetManager(ctx context.Context, c Config) (subnet.Manager, error) {
	netConf, err := json.Marshal(map[string]any{
		"Network":    c.ClusterCIDR,
		"EnableIPv4": true,
		"Backend":    map[string]string{"Type": c.Backend},
		// Read by the subnet manager to choose the traffic manager.
		"EnableNFTables": c.NFTables,
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	confPath := filepath.Join(c.Dir, "net-conf.json")
	if err := os.WriteFile(confPath, netConf, 0o644); err != nil {
		return nil, err
	}
	// The kube subnet manager learns the node name from the environment only.
	if err := os.Setenv("NODE_NAME", c.NodeName); err != nil {
		return nil, err
	}
	ksm, err := kube.NewSubnetManager(ctx, "", c.Kubeconfig, annotationPrefix, confPath, false)
	if err != nil {
		return nil, fmt.Errorf("flannel: subnet manager: %w", err)
	}
	return informerLagTolerant{ksm}, nil
}

// Run sets up the network and then follows the other nodes' leases until
// ctx ends. ready is closed once this node's subnet file is written. The
// subnet manager stops when Run returns.
func (n *Network) Run(ctx context.Context, ready chan<- struct{}) error {
	defer n.cancel()
	c := n.c
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		return fmt.Errorf("flannel: the kernel lacks br_netfilter (no /proc/sys/net/bridge): %w", err)
	}
	extIface, err := externalInterface(c.NodeIP)
	if err != nil {
		return fmt.Errorf("flannel: %w", err)
	}
	select {
	case <-n.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if n.err != nil {
		return n.err
	}
	sm := n.sm
	if err := waitForPodCIDR(ctx, c.Kubeconfig, c.NodeName); err != nil {
		return fmt.Errorf("flannel: wait for the node's podCIDR: %w", err)
	}
	config, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return fmt.Errorf("flannel: network config: %w", err)
	}
	be, err := backend.NewManager(ctx, sm, extIface).GetBackend(config.BackendType)
	if err != nil {
		return fmt.Errorf("flannel: backend %s: %w", config.BackendType, err)
	}
	var wg sync.WaitGroup
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("flannel: register network: %w", err)
	}
	lease := bn.Lease()
	if c.NFTables {
		tm := &nftables.NFTablesManager{}
		if err := tm.Init(ctx); err != nil {
			return fmt.Errorf("flannel: traffic manager: %w", err)
		}
		prevNetwork, prevSubnet := readSubnetFile(c.SubnetFile())
		if err := tm.SetupAndEnsureMasqRules(ctx, config.Network, prevSubnet, prevNetwork,
			ip.IP6Net{}, ip.IP6Net{}, ip.IP6Net{}, lease, masqResync, false); err != nil {
			return fmt.Errorf("flannel: masquerade rules: %w", err)
		}
		tm.SetupAndEnsureForwardRules(ctx, config.Network, ip.IP6Net{}, forwardResync)
	} else {
		rules, err := newIPTablesRules(config.Network.String(), lease.Subnet.String())
		if err != nil {
			return fmt.Errorf("flannel: %w", err)
		}
		guard := &iptablesGuard{every: guardEvery, list: netrules.List, setup: func(ctx context.Context, _ bool) error {
			return rules.setup(ctx, netrules.List, netrules.Restore)
		}, gens: netrules.NewGenerations(netrules.NFTablesBackend(ctx))}
		if err := guard.start(ctx); err != nil {
			return err
		}
		log.Infof("iptables rules set up: FLANNEL-POSTRTG (nat), FLANNEL-FWD (filter)")
	}
	if err := sm.HandleSubnetFile(c.SubnetFile(), config, true, lease.Subnet, lease.IPv6Subnet, bn.MTU()); err != nil {
		return fmt.Errorf("flannel: write subnet file: %w", err)
	}
	log.Infof("%s network ready: node subnet %s of %s, MTU %d, via %s (%s)",
		config.BackendType, lease.Subnet, config.Network, bn.MTU(), extIface.IfaceName, extIface.IfaceAddr)
	close(ready)
	bn.Run(ctx)
	wg.Wait()
	return nil
}

// informerLagTolerant retries AcquireLease while the subnet manager's node
// informer has not yet seen the podCIDR that waitForPodCIDR read from the
// API: a watch event behind (milliseconds), and flannel would fail for good.
type informerLagTolerant struct{ subnet.Manager }

func (m informerLagTolerant) AcquireLease(ctx context.Context, attrs *lease.LeaseAttrs) (*lease.Lease, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := m.Manager.AcquireLease(ctx, attrs)
		// kube's subnet manager has no error value for it, only this text.
		if err == nil || !strings.Contains(err.Error(), "pod cidr not assigned") || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitForPodCIDR(ctx context.Context, kubeconfig, node string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	logged := false
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			return true, nil
		}
		if !logged {
			log.Infof("waiting for node %s to be registered and given a podCIDR", node)
			logged = true
		}
		return false, nil
	})
}

// externalInterface is the interface holding the node IP: VXLAN packets
// leave through it and host-gw routes point across it.
func externalInterface(nodeIP net.IP) (*backend.ExternalInterface, error) {
	iface, err := ip.GetInterfaceByIP(nodeIP)
	if err != nil {
		return nil, fmt.Errorf("no interface holds node IP %s: %w", nodeIP, err)
	}
	if iface.MTU == 0 {
		return nil, fmt.Errorf("interface %s reports no MTU", iface.Name)
	}
	return &backend.ExternalInterface{Iface: iface, IfaceName: iface.Name, IfaceAddr: nodeIP, ExtAddr: nodeIP}, nil
}

// readSubnetFile returns the network and subnet of an earlier run, so stale
// masquerade rules can be replaced.
func readSubnetFile(path string) (network, subnet ip.IP4Net) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		k, v, ok := strings.Cut(s.Text(), "=")
		if !ok {
			continue
		}
		if _, n, err := net.ParseCIDR(v); err == nil && n.IP.To4() != nil {
			switch k {
			case "FLANNEL_NETWORK":
				network = ip.FromIPNet(n)
			case "FLANNEL_SUBNET":
				subnet = ip.FromIPNet(n)
			}
		}
	}
	return
}
