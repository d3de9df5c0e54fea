package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cluster-io/cluster/agent/bundle"
	"github.com/cluster-io/cluster/agent/containerd"
	"github.com/cluster-io/cluster/agent/flannel"
	"github.com/cluster-io/cluster/agent/images"
	"github.com/cluster-io/cluster/agent/join"
	"github.com/cluster-io/cluster/agent/kubelet"
	"github.com/cluster-io/cluster/agent/noleak"
	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/embedded"
	"github.com/cluster-io/cluster/internal/argv"
	"github.com/cluster-io/cluster/internal/kubeconfig"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("agent")

// Ports of the node daemons' loopback health endpoints.
const (
	kubeletHealthzPort   = 10248
	kubeProxyHealthzPort = 10256
)

// localHealth polls the node daemons' plain-HTTP loopback health endpoints.
var localHealth = &http.Client{Timeout: 2 * time.Second}

// Node is everything one node needs to start.
type Node struct {
	DataDir        string
	Name           string
	IP             net.IP
	ExternalIP     net.IP
	Labels         []string
	Taints         []string
	ClusterCIDR    string
	ServiceCIDR    string
	ClusterDNS     string
	ClusterDomain  string
	FlannelBackend string
	KubeletArgs    []string
	KubeProxyArgs  []string
	ResolvConf     string // --resolv-conf; "" picks one (resolvConf)
	APIServerURL   string
	Creds          join.Files
	// BeforeKubelet, if set, must return before the kubelet starts (the
	// server's own node waits for its controller-manager; see Setup).
	BeforeKubelet func(ctx context.Context) error
	// Prepared, if set, is this node's runtime, prepared already.
	Prepared *Prepared
}

// Paths is the node's layout under <data-dir>.
type Paths struct {
	Agent            string // <data-dir>/agent
	ContainerdConfig string
	ContainerdSocket string
	CNIConfDir       string
	CNIDataDir       string
	Images           string // air-gap drop folder: every *.tar is imported at start
	KubeletConfig    string
	KubeletKubecfg   string
	KubeProxyKubecfg string
	FlannelKubecfg   string
	FlannelDir       string
	CrictlConfig     string
	CgroupRootFile   string // the node's own cgroup tree, for the kill-all script
}

// Layout returns the node paths under dataDir.
func Layout(dataDir string) Paths {
	a := filepath.Join(dataDir, "agent")
	return Paths{
		Agent:            a,
		ContainerdConfig: filepath.Join(a, "etc", "containerd", "config.toml"),
		ContainerdSocket: filepath.Join(a, "run", "containerd.sock"),
		CNIConfDir:       filepath.Join(a, "etc", "cni", "net.d"),
		CNIDataDir:       filepath.Join(a, "cni"),
		Images:           filepath.Join(a, "images"),
		KubeletConfig:    filepath.Join(a, "etc", "kubelet.yaml"),
		KubeletKubecfg:   filepath.Join(a, "cred", "kubelet.kubeconfig"),
		KubeProxyKubecfg: filepath.Join(a, "cred", "kube-proxy.kubeconfig"),
		FlannelKubecfg:   filepath.Join(a, "cred", "flannel.kubeconfig"),
		FlannelDir:       filepath.Join(a, "flannel"),
		CrictlConfig:     filepath.Join(a, "etc", "crictl.yaml"),
		CgroupRootFile:   filepath.Join(a, "cgroup-root"),
	}
}

// Runtime is what preparing a node needs; none of it comes from the join,
// so the server's own node prepares while its control plane starts.
type Runtime struct {
	DataDir       string
	ClusterCIDR   string
	ServiceCIDR   string
	KubeProxyArgs []string // its proxy mode picks nft or iptables rules
}

// Prepared is a node's runtime, ready before the kubelet: the bundled
// binaries unpacked, containerd running with the pause image and the
// air-gap images, nothing addressed to the cluster's networks leaving the
// node, and the other bundled images on their way.
type Prepared struct {
	runtime    Runtime
	host       kubelet.Host
	cgroupRoot string
	waitImages func(ctx context.Context) error
}

// Prepare starts the node's runtime on mgr: containerd, then the images,
// then the no-leak rules.
func Prepare(ctx context.Context, mgr *component.Manager, r Runtime) (*Prepared, error) {
	p := Layout(r.DataDir)
	binDir, err := installBinaries(r.DataDir)
	if err != nil {
		return nil, err
	}
	log.Infof("to stop every container and remove the node's interfaces and rules: %s", filepath.Join(binDir, "cluster-killall.sh"))
	if err := writeCrictlConfig(p); err != nil {
		return nil, err
	}

	host := kubelet.DetectHost()
	cgroupRoot := CgroupRoot(r.DataDir)
	if err := kubelet.EnsureCgroup(cgroupRoot); err != nil {
		return nil, err
	}
	if cgroupRoot != "/" {
		// For the kill-all script, which removes the tree: left behind, every
		// later kubelet's cAdvisor would walk it each minute.
		if err := os.WriteFile(p.CgroupRootFile, []byte(cgroupRoot+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("record cgroup root: %w", err)
		}
	}
	ctrd := containerd.Config{
		Root:                filepath.Join(p.Agent, "containerd"),
		State:               filepath.Join(p.Agent, "run", "containerd"),
		Address:             p.ContainerdSocket,
		ShimSocketDir:       shimSocketDir(r.DataDir),
		RuncRoot:            filepath.Join(p.Agent, "run", "runc"),
		RuncBinary:          filepath.Join(binDir, "runc"),
		ShimBinary:          filepath.Join(binDir, "containerd-shim-runc-v2"),
		OptDir:              filepath.Join(p.Agent, "containerd-opt"),
		RegistryDir:         filepath.Join(p.Agent, "etc", "containerd", "certs.d"),
		CNIBinDir:           binDir,
		CNIConfDir:          p.CNIConfDir,
		SandboxImage:        PauseImage,
		RestrictOOMScoreAdj: !host.CanLowerOOMAdj,
		SystemdCgroup:       host.SystemdIsInit,
		DropInDir:           filepath.Join(filepath.Dir(p.ContainerdConfig), "config.d"),
	}
	if err := ctrd.Write(p.ContainerdConfig); err != nil {
		return nil, err
	}
	if err := mgr.Start(ctx, &containerd.Daemon{ConfigPath: p.ContainerdConfig, DropInDir: ctrd.DropInDir, BinDir: binDir}); err != nil {
		return nil, err
	}
	// The pause image and the air-gap folder before the kubelet: every pod
	// needs the first, static pods may need the second. The other bundled
	// images (CoreDNS's is 53 MB, 2 s to make) are made in the background —
	// on the server, while its control plane starts; on an agent, while the
	// kubelet registers. The pod network is reported only after them, so a
	// Ready node has every system image.
	// One containerd connection for all of it; the background work closes it.
	im, err := containerd.NewImporter(p.ContainerdSocket)
	if err != nil {
		return nil, err
	}
	if err := makeImages(ctx, im, binDir, bundledImages[:1]); err != nil {
		im.Close()
		return nil, err
	}
	if err := importAirGap(ctx, im, p.Images); err != nil {
		im.Close()
		return nil, err
	}
	imagesDone := make(chan struct{})
	var imagesErr error
	go func() {
		defer close(imagesDone)
		defer im.Close()
		imagesErr = makeImages(ctx, im, binDir, bundledImages[1:])
	}()
	waitImages := func(ctx context.Context) error {
		select {
		case <-imagesDone:
			return imagesErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Before any pod runs: nothing addressed to the cluster's networks
	// may leave the node.
	nl := noleak.Config{ServiceCIDR: r.ServiceCIDR, ClusterCIDR: r.ClusterCIDR, NFTables: ProxyMode(r.KubeProxyArgs) == "nftables"}
	nlReady := make(chan struct{})
	if err := mgr.Start(ctx, &component.Runner{
		ComponentName: "noleak",
		Run:           func(ctx context.Context) error { return noleak.Run(ctx, nl, nlReady) },
		ReadyFunc: func(ctx context.Context) error {
			select {
			case <-nlReady:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		StopTimeout: 5 * time.Second,
	}); err != nil {
		return nil, err
	}
	return &Prepared{runtime: r, host: host, cgroupRoot: cgroupRoot, waitImages: waitImages}, nil
}

// Start starts the node's components on mgr, in boot order: the runtime
// (Prepare, unless n.Prepared has it already), kubelet, flannel, kube-proxy.
// The manager stops them in reverse; containers keep running across a
// restart.
func Start(ctx context.Context, mgr *component.Manager, n Node) error {
	p := Layout(n.DataDir)
	pr := n.Prepared
	if pr == nil {
		var err error
		if pr, err = Prepare(ctx, mgr, Runtime{DataDir: n.DataDir, ClusterCIDR: n.ClusterCIDR, ServiceCIDR: n.ServiceCIDR, KubeProxyArgs: n.KubeProxyArgs}); err != nil {
			return err
		}
	}
	if r := pr.runtime; r.DataDir != n.DataDir || r.ClusterCIDR != n.ClusterCIDR || r.ServiceCIDR != n.ServiceCIDR {
		return fmt.Errorf("node prepared for data dir %s, cluster CIDR %s, service CIDR %s; the server gave %s, %s, %s",
			r.DataDir, r.ClusterCIDR, r.ServiceCIDR, n.DataDir, n.ClusterCIDR, n.ServiceCIDR)
	}
	host, cgroupRoot, waitImages := pr.host, pr.cgroupRoot, pr.waitImages
	if err := writeKubeconfigs(p, n); err != nil {
		return err
	}

	kc := &kubelet.Config{
		RootDir:         filepath.Join(p.Agent, "kubelet"),
		PodLogsDir:      filepath.Join(p.Agent, "pod-logs"),
		StaticPodDir:    filepath.Join(p.Agent, "pod-manifests"),
		RuntimeEndpoint: "unix://" + p.ContainerdSocket,
		ClientCAFile:    n.Creds.ClientCA,
		TLSCertFile:     n.Creds.KubeletServe.Cert,
		TLSKeyFile:      n.Creds.KubeletServe.Key,
		ClusterDNS:      n.ClusterDNS,
		ClusterDomain:   n.ClusterDomain,
		CgroupRoot:      cgroupRoot,
		ResolvConf:      resolvConf(p, n.ResolvConf),
		HealthzPort:     kubeletHealthzPort,
		Taints:          n.Taints,
		Host:            host,
		KubeconfigPath:  p.KubeletKubecfg,
		NodeName:        n.Name,
		NodeIP:          n.IP.String(),
		NodeLabels:      n.Labels,
		ConfigPath:      p.KubeletConfig,
		ExtraArgs:       n.KubeletArgs,
	}
	if err := kc.Write(); err != nil {
		return err
	}
	kubeletArgs := kc.Args()
	var network *flannel.Network
	if n.FlannelBackend != "none" {
		network = flannel.Start(ctx, flannel.Config{
			Kubeconfig:  p.FlannelKubecfg,
			NodeName:    n.Name,
			NodeIP:      n.IP,
			ClusterCIDR: n.ClusterCIDR,
			Backend:     n.FlannelBackend,
			NFTables:    ProxyMode(n.KubeProxyArgs) == "nftables",
			Dir:         p.FlannelDir,
			CNIConfDir:  p.CNIConfDir,
			CNIDataDir:  p.CNIDataDir,
		})
	}
	if err := startDaemons(ctx, mgr, n, p, host, kubeletArgs, network, waitImages); err != nil {
		if network != nil {
			network.Close()
		}
		return err
	}
	go annotateNode(ctx, p.KubeletKubecfg, n.Name, map[string]string{StorageAnnotation: filepath.Join(n.DataDir, "storage")})
	return nil
}

// startDaemons starts the kubelet, flannel (network, unless nil) and
// kube-proxy on mgr.
func startDaemons(ctx context.Context, mgr *component.Manager, n Node, p Paths, host kubelet.Host, kubeletArgs []string, network *flannel.Network, waitImages func(context.Context) error) error {
	if n.BeforeKubelet != nil {
		if err := n.BeforeKubelet(ctx); err != nil {
			return err
		}
	}
	daemons := []component.Component{&component.Runner{
		ComponentName: "kubelet",
		Run:           func(ctx context.Context) error { return embedded.RunKubelet(ctx, kubeletArgs) },
		ReadyFunc:     component.HTTPReady(localHealth, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthzPort)),
		StopTimeout:   5 * time.Second,
	}}

	if network != nil {
		ready := make(chan struct{})
		daemons = append(daemons, &component.Runner{
			ComponentName: "flannel",
			Run:           func(ctx context.Context) error { return network.Run(ctx, ready) },
			ReadyFunc: func(ctx context.Context) error {
				select {
				case <-ready:
				case <-ctx.Done():
					return ctx.Err()
				}
				if err := waitImages(ctx); err != nil {
					return err
				}
				// Only now may containerd report the network ready: the
				// plugin needs the subnet file flannel just wrote.
				return network.WriteCNIConfig()
			},
			StopTimeout: 5 * time.Second,
		})
	} else {
		log.Infof("--flannel-backend=none: bring your own CNI; put its conflist in %s", p.CNIConfDir)
		if err := waitImages(ctx); err != nil {
			return err
		}
	}

	proxyArgs := argv.Merge(map[string]string{
		"kubeconfig":                        p.KubeProxyKubecfg,
		"hostname-override":                 n.Name,
		"bind-address":                      n.IP.String(),
		"cluster-cidr":                      n.ClusterCIDR,
		"proxy-mode":                        "iptables",
		"healthz-bind-address":              "127.0.0.1:" + strconv.Itoa(kubeProxyHealthzPort),
		"metrics-bind-address":              "127.0.0.1:10249",
		"oom-score-adj":                     oomScoreAdj(host),
		"conntrack-max-per-core":            "0", // leave the host's conntrack table size alone
		"conntrack-tcp-timeout-established": "0s",
		"conntrack-tcp-timeout-close-wait":  "0s",
	}, n.KubeProxyArgs)
	daemons = append(daemons, &component.Runner{
		ComponentName: "kube-proxy",
		Run:           func(ctx context.Context) error { return embedded.RunKubeProxy(ctx, proxyArgs) },
		ReadyFunc:     component.HTTPReady(localHealth, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeProxyHealthzPort)),
		StopTimeout:   5 * time.Second,
	})
	return mgr.Start(ctx, daemons...)
}

// installBinaries unpacks the bundled binaries once per content hash and
// points <data-dir>/data/current at them. Everything refers to them through
// "current": containerd records the shim's path in every running container,
// and that path must survive an upgrade.
func installBinaries(dataDir string) (string, error) {
	begin := time.Now()
	dir, err := bundle.Unpack(dataDir)
	if err != nil {
		return "", err
	}
	versionDir := filepath.Dir(dir)
	current := filepath.Join(dataDir, "data", "current")
	if target, err := os.Readlink(current); err != nil || target != filepath.Base(versionDir) {
		tmp := current + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Base(versionDir), tmp); err != nil {
			return "", fmt.Errorf("node binaries: %w", err)
		}
		if err := os.Rename(tmp, current); err != nil {
			return "", fmt.Errorf("node binaries: %w", err)
		}
		log.Infof("node binaries in %s (%s)", versionDir, time.Since(begin).Round(time.Millisecond))
	}
	return filepath.Join(current, "bin"), nil
}

func writeKubeconfigs(p Paths, n Node) error {
	if err := os.MkdirAll(filepath.Dir(p.KubeletKubecfg), 0o700); err != nil {
		return err
	}
	for path, pair := range map[string]join.Pair{
		p.KubeletKubecfg:   n.Creds.KubeletClient,
		p.KubeProxyKubecfg: n.Creds.KubeProxy,
		p.FlannelKubecfg:   n.Creds.Flannel,
	} {
		spec := kubeconfig.Spec{Server: n.APIServerURL, CAFile: n.Creds.ServerCA, CertFile: pair.Cert, KeyFile: pair.Key}
		if err := kubeconfig.Write(path, 0o600, spec); err != nil {
			return fmt.Errorf("node kubeconfig: %w", err)
		}
	}
	return nil
}

// writeCrictlConfig points `cluster crictl` at this node's containerd.
func writeCrictlConfig(p Paths) error {
	endpoint := "unix://" + p.ContainerdSocket
	text := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 10\n", endpoint, endpoint)
	if err := os.MkdirAll(filepath.Dir(p.CrictlConfig), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p.CrictlConfig, []byte(text), 0o644)
}

// Images the node makes from its bundled binaries; nothing pulls them.
const (
	PauseImage   = "localhost/cluster/pause:3.10"
	CoreDNSImage = "localhost/cluster/coredns:1.15.0"
	// LocalPathHelperImage makes and removes local-path volume directories
	// (server/localstorage runs it on the volume's node).
	LocalPathHelperImage = "localhost/cluster/local-path-helper:1"
)

// StorageAnnotation on a Node names the directory under which its
// local-path volumes live: <data-dir>/storage of that node.
const StorageAnnotation = "cluster.io/local-storage-path"

// bundledImage is a one-binary image made from the node bundle.
type bundledImage struct{ name, binary, user string }

// bundledImages are the images the node makes; the pause image first.
var bundledImages = []bundledImage{
	{PauseImage, "pause", "65535:65535"},
	// Port 53 as nobody: containerd allows unprivileged ports in pods.
	{CoreDNSImage, "coredns", "65534:65534"},
	// Root: it creates directories in the node's storage directory.
	{LocalPathHelperImage, "local-path-helper", "0:0"},
}

// makeImages makes the images of bundled, unless containerd has them from
// the same binary already.
func makeImages(ctx context.Context, im *containerd.Importer, binDir string, bundled []bundledImage) error {
	for _, b := range bundled {
		begin := time.Now()
		// Mapped, not read: CoreDNS's 53 MB stay out of the Go heap, so the
		// collector does not work through them while the control plane
		// starts.
		data, unmap, err := mapFile(filepath.Join(binDir, b.binary))
		if err != nil {
			return fmt.Errorf("image %s: %w", b.name, err)
		}
		sum := sha256.Sum256(data)
		made, err := im.ImportBuilt(ctx, b.name, hex.EncodeToString(sum[:]), func(w io.Writer) error {
			log.Infof("making image %s from the bundled %s (%d MB)…", b.name, b.binary, len(data)>>20)
			return images.WriteOCIArchive(w, images.Spec{
				Name:       b.name,
				Files:      []images.File{{Path: "/" + b.binary, Mode: 0o755, Data: data}},
				Entrypoint: []string{"/" + b.binary},
				User:       b.user,
			})
		})
		unmap()
		if err != nil {
			return fmt.Errorf("image %s: %w", b.name, err)
		}
		if made {
			log.Infof("image %s ready (%s)", b.name, time.Since(begin).Round(time.Millisecond))
		}
	}
	return nil
}

// mapFile maps the file at name read-only; unmap releases it.
func mapFile(name string) (data []byte, unmap func(), err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() == 0 {
		return nil, func() {}, nil
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", name, err)
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}

// importAirGap imports every archive in the air-gap folder dir.
func importAirGap(ctx context.Context, im *containerd.Importer, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return im.ImportDir(ctx, dir)
}

// CgroupRoot is the cgroup under which the node's kubelet puts its pods:
// upstream's "/" for the default data dir, and one of its own for any other,
// so that several nodes on one host (each with its data dir) never tear
// down each other's pods.
func CgroupRoot(dataDir string) string {
	if filepath.Clean(dataDir) == DefaultDataDir {
		return "/"
	}
	sum := sha256.Sum256([]byte(dataDir))
	return "/cluster-" + hex.EncodeToString(sum[:])[:12]
}

// shimSocketDir must fit a unix socket path (≤42 bytes), so it cannot live
// under an arbitrary data dir; one per data dir, so nodes sharing a host
// keep theirs apart.
func shimSocketDir(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return "/run/cluster/" + hex.EncodeToString(sum[:])[:12] + "/s"
}

// resolvConf is --resolv-conf, or the host's resolv.conf unless it names a
// loopback resolver (systemd-resolved's 127.0.0.53), which pods cannot reach.
func resolvConf(p Paths, given string) string {
	if given != "" {
		if abs, err := filepath.Abs(given); err == nil {
			return abs
		}
		return given
	}
	const host = "/etc/resolv.conf"
	b, err := os.ReadFile(host)
	if err != nil || !strings.Contains(string(b), "nameserver 127.") {
		return host
	}
	const upstream = "/run/systemd/resolve/resolv.conf" // systemd-resolved's real servers
	if b, err := os.ReadFile(upstream); err == nil && !strings.Contains(string(b), "nameserver 127.") {
		return upstream
	}
	path := filepath.Join(p.Agent, "etc", "resolv.conf")
	_ = os.WriteFile(path, []byte("nameserver 8.8.8.8\n"), 0o644)
	log.Warnf("%s names a loopback resolver; pods use %s", host, path)
	return path
}

func oomScoreAdj(h kubelet.Host) string {
	if h.CanLowerOOMAdj {
		return "-999"
	}
	return "0"
}

// ProxyMode is the kube-proxy mode the --kube-proxy-arg values select.
func ProxyMode(args []string) string {
	if v, ok := argv.Value(argv.Merge(nil, args), "proxy-mode"); ok {
		return v
	}
	return "iptables"
}
