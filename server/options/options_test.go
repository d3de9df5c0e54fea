package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func defaults(t *testing.T) *Server {
	t.Helper()
	o := &Server{}
	cmd := &cobra.Command{}
	o.AddFlags(cmd.Flags())
	return o
}

func TestDefaultsAreValid(t *testing.T) {
	o := defaults(t)
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if o.DataDir != "/var/lib/cluster" || o.HTTPSListenPort != 6443 || o.ClusterCIDR != "10.42.0.0/16" ||
		o.ServiceCIDR != "10.43.0.0/16" || o.ClusterDNS != "10.43.0.10" || o.ClusterDomain != "cluster.local" ||
		o.WriteKubeconfig != "/etc/cluster/kubeconfig.yaml" {
		t.Errorf("unexpected defaults: %+v", o)
	}
}

func TestValidateBadInput(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(o *Server)
		wantErr string
	}{
		{"cluster cidr", func(o *Server) { o.ClusterCIDR = "10.42.0.0/33" }, `--cluster-cidr "10.42.0.0/33" is not a CIDR`},
		{"service cidr", func(o *Server) { o.ServiceCIDR = "nonsense" }, `--service-cidr "nonsense" is not a CIDR`},
		{"overlap", func(o *Server) { o.ServiceCIDR = "10.42.128.0/20" }, "overlap"},
		{"dns outside service cidr", func(o *Server) { o.ClusterDNS = "10.44.0.10" }, "--cluster-dns 10.44.0.10 is not inside --service-cidr"},
		{"dns not ip", func(o *Server) { o.ClusterDNS = "dns" }, `--cluster-dns "dns" is not an IP address`},
		{"bind address", func(o *Server) { o.BindAddress = "1.2.3" }, `--bind-address "1.2.3" is not an IP address`},
		{"advertise address", func(o *Server) { o.AdvertiseAddress = "host" }, `--advertise-address "host" is not an IP address`},
		{"advertise loopback", func(o *Server) { o.AdvertiseAddress = "127.0.0.1" }, "not loopback"},
		{"port range", func(o *Server) { o.HTTPSListenPort = 70000 }, "--https-listen-port 70000 is out of range"},
		{"token and file", func(o *Server) { o.Token, o.TokenFile = "a", "b" }, "either --token or --token-file"},
		{"kubeconfig mode", func(o *Server) { o.WriteKubeconfigMode = "rw" }, `--write-kubeconfig-mode "rw" is not an octal file mode`},
		{"kubeconfig mode too big", func(o *Server) { o.WriteKubeconfigMode = "1777" }, "is not an octal file mode"},
		{"endpoint scheme", func(o *Server) { o.DatastoreEndpoint = "redis://x" }, `unsupported scheme "redis"`},
		{"endpoint hides password", func(o *Server) { o.DatastoreEndpoint = "user:secret@host/db" }, "…@host/db"},
		{"empty data dir", func(o *Server) { o.DataDir = "" }, "--data-dir must not be empty"},
		{"tls san", func(o *Server) { o.TLSSANs = []string{"a b"} }, `--tls-san "a b"`},
		{"passthrough arg", func(o *Server) { o.KubeAPIServerArgs = []string{"=x"} }, `--kube-apiserver-arg "=x": want name=value`},
		{"node name", func(o *Server) { o.NodeName = "Edge_1" }, `--node-name "Edge_1" must be lowercase`},
		{"ipv6 cluster cidr", func(o *Server) { o.ClusterCIDR = "fd00::/64" }, "only IPv4"},
		{"node ip", func(o *Server) { o.NodeIP = "10.0.0" }, `--node-ip "10.0.0" is not an IPv4 address`},
		{"cluster-init on sql", func(o *Server) { o.ClusterInit, o.DatastoreEndpoint = true, "postgres://h/db" }, "--cluster-init runs embedded etcd"},
		{"server join on sql", func(o *Server) { o.Server, o.Token, o.DatastoreEndpoint = "https://h:6443", "t", "postgres://h/db" }, "without --server"},
		{"server not https", func(o *Server) { o.Server, o.Token = "http://h:6443", "t" }, `--server "http://h:6443": want https://HOST:PORT`},
		{"server without token", func(o *Server) { o.Server = "https://h:6443" }, "--server needs the first server's token"},
		{"restore without reset", func(o *Server) { o.ClusterResetRestore = "/x" }, "--cluster-reset-restore-path needs --cluster-reset"},
		{"bad cron", func(o *Server) { o.ScheduleCron = "every day" }, `--etcd-snapshot-schedule-cron "every day"`},
		{"retention", func(o *Server) { o.Retention = 0 }, "--etcd-snapshot-retention 0"},
		{"loopback node ip", func(o *Server) { o.NodeIP = "127.0.0.1" }, "not loopback"},
		{"external ip", func(o *Server) { o.NodeExternalIP = "fd00::1" }, "--node-external-ip"},
		{"label without value", func(o *Server) { o.NodeLabels = []string{"role"} }, `--node-label "role": want key=value`},
		{"label key", func(o *Server) { o.NodeLabels = []string{"bad key=x"} }, `--node-label "bad key=x": key`},
		{"taint effect", func(o *Server) { o.NodeTaints = []string{"k=v:Sometimes"} }, "Effect one of NoSchedule"},
		{"flannel backend", func(o *Server) { o.FlannelBackend = "wireguard" }, `--flannel-backend "wireguard": want one of vxlan, host-gw, none`},
		{"kubelet arg", func(o *Server) { o.KubeletArgs = []string{"=x"} }, "--kubelet-arg"},
		{"bolt without a file", func(o *Server) { o.DatastoreEndpoint = "bolt://" }, "bolt needs a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults(t)
			tt.mutate(o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks a password: %v", err)
			}
		})
	}
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("data-dir: /file\ncluster-domain: file.local\nhttps-listen-port: 7000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &Server{}
	cmd := &cobra.Command{}
	o.AddFlags(cmd.Flags())
	if err := cmd.Flags().Parse([]string{"--config", cfg, "--https-listen-port=9000"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLUSTER_CLUSTER_DOMAIN": "env.local"}
	if err := o.Load(cmd, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if o.DataDir != "/file" || o.ClusterDomain != "env.local" || o.HTTPSListenPort != 9000 {
		t.Errorf("got data-dir=%s domain=%s port=%d", o.DataDir, o.ClusterDomain, o.HTTPSListenPort)
	}
}

func TestLoadConfigFileFromEnv(t *testing.T) {
	o := &Server{}
	cmd := &cobra.Command{}
	o.AddFlags(cmd.Flags())
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	err := o.Load(cmd, func(k string) string {
		if k == "CLUSTER_CONFIG_FILE" {
			return missing
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("a config file named by CLUSTER_CONFIG_FILE must exist; got %v", err)
	}
}
