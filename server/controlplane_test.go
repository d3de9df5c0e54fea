package server

import (
	"net"
	"testing"

	"github.com/cluster-io/cluster/datastore"
	"github.com/cluster-io/cluster/internal/argv"
	"github.com/cluster-io/cluster/server/pki"
)

// The footprint defaults of a sole server (README "Defaults that differ
// from upstream") hold only there, and --kube-apiserver-arg takes each back.
func TestAPIServerFootprintDefaults(t *testing.T) {
	sole := controlPlane{advertiseAddress: net.ParseIP("192.0.2.1"), p: newPaths(t.TempDir())}
	shared := sole
	shared.sharedKine = true
	etcd := sole
	etcd.etcdTLS = &datastore.EtcdTLS{}
	tests := []struct {
		name  string
		cp    controlPlane
		extra []string
		want  map[string]string // "" means: not set, upstream's default
	}{
		{"sole server", sole, nil, map[string]string{
			"etcd-count-metric-poll-period": "0",
			"endpoint-reconciler-type":      "master-count",
			"feature-gates":                 "APIServerIdentity=false,SizeBasedListCostEstimate=false,UnknownVersionInteroperabilityProxy=false",
		}},
		{"sole server, upstream's back", sole, []string{"--etcd-count-metric-poll-period=1m", "--endpoint-reconciler-type=lease"}, map[string]string{
			"etcd-count-metric-poll-period": "1m",
			"endpoint-reconciler-type":      "lease",
		}},
		{"shared database", shared, nil, map[string]string{
			"etcd-count-metric-poll-period": "",
			"endpoint-reconciler-type":      "",
			"feature-gates":                 "WatchList=false",
		}},
		{"embedded etcd", etcd, nil, map[string]string{
			"etcd-count-metric-poll-period": "",
			"endpoint-reconciler-type":      "",
			"feature-gates":                 "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.cp.apiServerArgs(tt.extra)
			for name, want := range tt.want {
				got, ok := argv.Value(args, name)
				if want == "" && ok {
					t.Errorf("--%s=%s, want it unset", name, got)
				}
				if want != "" && got != want {
					t.Errorf("--%s=%q, want %q", name, got, want)
				}
			}
		})
	}
}

// The controller-manager and the scheduler serve on loopback with
// certificates from our PKI: without them each makes a self-signed RSA key
// at every start.
func TestControllerManagerAndSchedulerServeOurCertificates(t *testing.T) {
	cp := controlPlane{advertiseAddress: net.ParseIP("192.0.2.1"), p: newPaths(t.TempDir())}
	for name, tt := range map[string]struct {
		args []string
		pair pki.Pair
	}{
		"controller-manager": {cp.controllerManagerArgs(nil), cp.p.tls.ControllerMgrServing},
		"scheduler":          {cp.schedulerArgs(nil), cp.p.tls.SchedulerServing},
	} {
		cert, _ := argv.Value(tt.args, "tls-cert-file")
		key, _ := argv.Value(tt.args, "tls-private-key-file")
		if cert == "" || cert != tt.pair.Cert || key != tt.pair.Key {
			t.Errorf("%s: --tls-cert-file=%q --tls-private-key-file=%q, want %s", name, cert, key, tt.pair)
		}
	}
}

// The controller-manager's client limits are raised (README "Defaults that
// differ from upstream"), and --kube-controller-manager-arg takes them back.
func TestControllerManagerClientLimits(t *testing.T) {
	cp := controlPlane{advertiseAddress: net.ParseIP("192.0.2.1"), p: newPaths(t.TempDir())}
	tests := []struct {
		name       string
		extra      []string
		qps, burst string
	}{
		{"default", nil, "100", "200"},
		{"upstream's back", []string{"--kube-api-qps=20", "--kube-api-burst=30"}, "20", "30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := cp.controllerManagerArgs(tt.extra)
			if got, _ := argv.Value(args, "kube-api-qps"); got != tt.qps {
				t.Errorf("--kube-api-qps=%q, want %q", got, tt.qps)
			}
			if got, _ := argv.Value(args, "kube-api-burst"); got != tt.burst {
				t.Errorf("--kube-api-burst=%q, want %q", got, tt.burst)
			}
		})
	}
}
