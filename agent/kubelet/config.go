// Package kubelet renders the kubelet's configuration file and flags for
// this host: cgroup driver and cgroup v1 tolerance, OOM score where the
// process may not lower it, and every node-local path under the data dir.
package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/cluster-io/cluster/internal/argv"
)

// NodeLeaseDurationSeconds is the node Lease's duration (upstream: 40).
const NodeLeaseDurationSeconds = 120

// Host is what the kubelet configuration depends on in the machine.
type Host struct {
	SystemdIsInit   bool // PID 1 is systemd → systemd cgroup driver
	CgroupV1        bool
	CanLowerOOMAdj  bool // CAP_SYS_RESOURCE: a negative oom_score_adj is allowed
	NoFileHardLimit uint64
}

// Config is one node's kubelet.
type Config struct {
	RootDir          string // <data-dir>/agent/kubelet
	PodLogsDir       string
	StaticPodDir     string
	RuntimeEndpoint  string // unix:///…/containerd.sock
	ClientCAFile     string
	TLSCertFile      string
	TLSKeyFile       string
	ClusterDNS       string
	ClusterDomain    string
	CgroupRoot       string // "/" or the node's own (several nodes on one host)
	ResolvConf       string
	HealthzPort      int
	Taints           []string // key=value:Effect
	Host             Host
	KubeconfigPath   string
	NodeName         string
	NodeIP           string
	NodeLabels       []string
	ConfigPath       string
	ExtraArgs        []string // --kubelet-arg, applied last
	CgroupDriverName string   // derived; exported for logging
}

// DetectHost reads the facts the kubelet configuration depends on.
func DetectHost() Host {
	h := Host{CanLowerOOMAdj: hasCapSysResource(), NoFileHardLimit: noFileHardLimit()}
	if target, err := os.Readlink("/proc/1/exe"); err == nil && strings.HasSuffix(target, "/systemd") {
		h.SystemdIsInit = true
	}
	var st syscall.Statfs_t
	// cgroup2 mounted at /sys/fs/cgroup means unified mode; anything else
	// (tmpfs with v1 hierarchies, hybrid included) is v1 to the kubelet.
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type != 0x63677270 {
		h.CgroupV1 = true
	}
	return h
}

func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<24) != 0 // CAP_SYS_RESOURCE
		}
	}
	return false
}

func noFileHardLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Max
}

// Render returns the KubeletConfiguration YAML.
func (c *Config) Render() ([]byte, error) {
	driver := "cgroupfs"
	if c.Host.SystemdIsInit {
		driver = "systemd"
	}
	c.CgroupDriverName = driver
	kc := kubeletv1beta1.KubeletConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:            "0.0.0.0",
		Port:               10250,
		ReadOnlyPort:       0,
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To(int32(c.HealthzPort)),
		TLSCertFile:        c.TLSCertFile,
		TLSPrivateKeyFile:  c.TLSKeyFile,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: c.ClientCAFile},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true), CacheTTL: metav1.Duration{Duration: 2 * time.Minute}},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{
			Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook,
			Webhook: kubeletv1beta1.KubeletWebhookAuthorization{
				CacheAuthorizedTTL:   metav1.Duration{Duration: 5 * time.Minute},
				CacheUnauthorizedTTL: metav1.Duration{Duration: 30 * time.Second},
			},
		},
		CgroupDriver:             driver,
		CgroupRoot:               c.CgroupRoot,
		ContainerRuntimeEndpoint: c.RuntimeEndpoint,
		ClusterDNS:               []string{c.ClusterDNS},
		ClusterDomain:            c.ClusterDomain,
		ResolverConfig:           ptr.To(c.ResolvConf),
		StaticPodPath:            c.StaticPodDir,
		PodLogsDir:               c.PodLogsDir,
		SerializeImagePulls:      ptr.To(false),
		// Renew the node Lease every 30 s (a quarter of it), not every
		// 10 s: each renewal is a datastore write, the largest left on an
		// idle cluster. The controller-manager's node-monitor-grace-period
		// (90 s) matches. --kubelet-arg=node-lease-duration-seconds=40
		// restores upstream's.
		NodeLeaseDurationSeconds: NodeLeaseDurationSeconds,
		FailSwapOn:               ptr.To(false),
		// Pull nothing we were given offline out from under the pods; the
		// imported images are pinned anyway.
		ImageGCHighThresholdPercent: ptr.To(int32(90)),
		ImageGCLowThresholdPercent:  ptr.To(int32(80)),
		EvictionHard: map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "5%",
			"nodefs.inodesFree": "5%",
			"imagefs.available": "5%",
		},
		// The kubelet sets this limit for the whole `cluster` process: never
		// above the hard limit (without CAP_SYS_RESOURCE it cannot raise it).
		MaxOpenFiles: maxOpenFiles(c.Host.NoFileHardLimit),
	}
	if c.Host.CgroupV1 {
		kc.FailCgroupV1 = ptr.To(false)
	}
	if !c.Host.CanLowerOOMAdj {
		// The kubelet applies this to our whole process; a negative value
		// needs CAP_SYS_RESOURCE.
		kc.OOMScoreAdj = ptr.To(int32(0))
	}
	for _, t := range c.Taints {
		taint, err := parseTaint(t)
		if err != nil {
			return nil, err
		}
		kc.RegisterWithTaints = append(kc.RegisterWithTaints, taint)
	}
	return yaml.Marshal(kc)
}

// maxOpenFiles is the kubelet's default (1,000,000) capped by the hard limit.
func maxOpenFiles(hard uint64) int64 {
	const kubeletDefault = 1000000
	if hard == 0 || hard > kubeletDefault {
		return kubeletDefault
	}
	return int64(hard)
}

// Write writes the configuration file and creates the kubelet's dirs.
func (c *Config) Write() error {
	b, err := c.Render()
	if err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(c.ConfigPath), c.RootDir, c.PodLogsDir, c.StaticPodDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("kubelet: %w", err)
		}
	}
	return os.WriteFile(c.ConfigPath, b, 0o600)
}

// HousekeepingInterval is how often the kubelet's cAdvisor reads each
// container's cgroup files (upstream: 10s; cAdvisor waits between one and
// two intervals). Only the cached per-container stats get older, what
// metrics-server (60 s resolution) and the summary API report; the
// eviction manager asks for fresh node stats itself every 10 s.
// --kubelet-arg=housekeeping-interval=10s restores upstream's.
const HousekeepingInterval = "30s"

// Args are the kubelet's flags (what has no config field), then the
// user's --kubelet-arg overrides.
func (c *Config) Args() []string {
	m := map[string]string{
		"housekeeping-interval": HousekeepingInterval,
		"config":                c.ConfigPath,
		"kubeconfig":            c.KubeconfigPath,
		"root-dir":              c.RootDir,
		"cert-dir":              filepath.Join(c.RootDir, "pki"),
		"hostname-override":     c.NodeName,
		"node-ip":               c.NodeIP,
	}
	if len(c.NodeLabels) > 0 {
		m["node-labels"] = strings.Join(c.NodeLabels, ",")
	}
	return argv.Merge(m, c.ExtraArgs)
}

func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return corev1.Taint{}, fmt.Errorf("--node-taint %q: want key=value:Effect", s)
	}
	key, value, _ := strings.Cut(kv, "=")
	return corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}, nil
}
