// Command flannel is the CNI plugin of cluster's flannel network. It reads
// the subnet lease flannel wrote (FLANNEL_SUBNET, FLANNEL_NETWORK,
// FLANNEL_MTU, FLANNEL_IPMASQ) and delegates to the bridge plugin with
// host-local IPAM over that subnet. The delegate configuration of every
// container is saved, so DEL works even after the lease changed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// netConf is the plugin's own configuration in the conflist.
type netConf struct {
	types.NetConf
	// SubnetFile is the env file flannel writes with this node's lease.
	SubnetFile string `json:"subnetFile"`
	// DataDir keeps each container's delegate configuration for DEL.
	DataDir string `json:"dataDir"`
	// IPAMDataDir is host-local's allocation store (kept per node).
	IPAMDataDir string `json:"ipamDataDir"`
	// Delegate is merged into the generated bridge configuration.
	Delegate map[string]any `json:"delegate"`
}

type subnetEnv struct {
	network *net.IPNet
	subnet  *net.IPNet
	mtu     int
	ipMasq  bool
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck}, version.All, "flannel CNI plugin (cluster)")
}

func loadConf(data []byte) (*netConf, error) {
	conf := &netConf{SubnetFile: "/run/flannel/subnet.env", DataDir: "/var/lib/cni/flannel"}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, fmt.Errorf("flannel: parse network configuration: %w", err)
	}
	return conf, nil
}

func readSubnetEnv(path string) (*subnetEnv, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("flannel: read %s (is flannel running on this node?): %w", path, err)
	}
	defer f.Close()
	env := &subnetEnv{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(s.Text()), "=")
		if !ok {
			continue
		}
		switch key {
		case "FLANNEL_NETWORK":
			_, env.network, err = net.ParseCIDR(value)
		case "FLANNEL_SUBNET":
			var ip net.IP
			ip, env.subnet, err = net.ParseCIDR(value)
			if err == nil {
				env.subnet.IP = ip // keep the gateway address flannel chose
			}
		case "FLANNEL_MTU":
			env.mtu, err = strconv.Atoi(value)
		case "FLANNEL_IPMASQ":
			env.ipMasq, err = strconv.ParseBool(value)
		}
		if err != nil {
			return nil, fmt.Errorf("flannel: %s: %s: %w", path, key, err)
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if env.network == nil || env.subnet == nil {
		return nil, fmt.Errorf("flannel: %s lacks FLANNEL_NETWORK or FLANNEL_SUBNET", path)
	}
	return env, nil
}

// delegateConf builds the bridge + host-local configuration for this node.
func delegateConf(conf *netConf, env *subnetEnv) ([]byte, error) {
	d := map[string]any{}
	for k, v := range conf.Delegate {
		d[k] = v
	}
	d["name"] = conf.Name
	d["cniVersion"] = conf.CNIVersion
	if _, ok := d["type"]; !ok {
		d["type"] = "bridge"
	}
	if _, ok := d["bridge"]; !ok {
		d["bridge"] = "cni0"
	}
	if _, ok := d["isGateway"]; !ok {
		d["isGateway"] = true
	}
	// flannel masquerades traffic leaving the cluster network itself; the
	// bridge must not do it a second time.
	d["ipMasq"] = !env.ipMasq
	if env.mtu > 0 {
		d["mtu"] = env.mtu
	}
	subnet := &net.IPNet{IP: env.subnet.IP.Mask(env.subnet.Mask), Mask: env.subnet.Mask}
	ipam := map[string]any{
		"type":   "host-local",
		"ranges": [][]map[string]string{{{"subnet": subnet.String()}}},
		"routes": []map[string]string{{"dst": env.network.String()}},
	}
	if conf.IPAMDataDir != "" {
		ipam["dataDir"] = conf.IPAMDataDir
	}
	d["ipam"] = ipam
	return json.Marshal(d)
}

func savedPath(conf *netConf, containerID, ifName string) string {
	return filepath.Join(conf.DataDir, containerID+"-"+ifName)
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	env, err := readSubnetEnv(conf.SubnetFile)
	if err != nil {
		return err
	}
	delegate, err := delegateConf(conf, env)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(conf.DataDir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(savedPath(conf, args.ContainerID, args.IfName), delegate, 0o600); err != nil {
		return fmt.Errorf("flannel: save delegate configuration: %w", err)
	}
	typ, _ := jsonType(delegate)
	result, err := invoke.DelegateAdd(context.TODO(), typ, delegate, nil)
	if err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	path := savedPath(conf, args.ContainerID, args.IfName)
	delegate, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never added, or already deleted: DEL must be idempotent
	}
	if err != nil {
		return err
	}
	typ, err := jsonType(delegate)
	if err != nil {
		return err
	}
	if err := invoke.DelegateDel(context.TODO(), typ, delegate, nil); err != nil {
		return err
	}
	return os.Remove(path)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	delegate, err := os.ReadFile(savedPath(conf, args.ContainerID, args.IfName))
	if err != nil {
		return fmt.Errorf("flannel: no saved configuration for container %s: %w", args.ContainerID, err)
	}
	typ, err := jsonType(delegate)
	if err != nil {
		return err
	}
	return invoke.DelegateCheck(context.TODO(), typ, delegate, nil)
}

func jsonType(conf []byte) (string, error) {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(conf, &t); err != nil || t.Type == "" {
		return "", fmt.Errorf("flannel: delegate configuration has no type")
	}
	return t.Type, nil
}
