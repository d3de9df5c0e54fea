package embedded

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// The node Lease duration is a configuration field without an upstream
// flag; ours makes --kubelet-arg able to set it back over the file.
func TestKubeletNodeLeaseDurationFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kubelet.yaml")
	config := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nnodeLeaseDurationSeconds: 120\n"
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int32
	}{
		{[]string{"--config", file}, 120},
		{[]string{"--config", file, "--node-lease-duration-seconds=40"}, 40},
		{[]string{"--node-lease-duration-seconds=60"}, 60},
	} {
		_, kc, err := kubeletConfiguration(context.Background(), tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if kc.NodeLeaseDurationSeconds != tc.want {
			t.Errorf("%v: nodeLeaseDurationSeconds %d, want %d", tc.args, kc.NodeLeaseDurationSeconds, tc.want)
		}
	}
}

// cAdvisor's housekeeping interval is a process-wide flag of its own that
// the kubelet's flag set carries: --housekeeping-interval must reach it.
func TestKubeletHousekeepingIntervalFlag(t *testing.T) {
	f := flag.Lookup("housekeeping_interval")
	if f == nil {
		t.Fatal("cAdvisor's housekeeping_interval flag is not registered")
	}
	before := f.Value.String()
	t.Cleanup(func() { f.Value.Set(before) })
	if _, _, err := kubeletConfiguration(context.Background(), []string{"--housekeeping-interval=30s"}); err != nil {
		t.Fatal(err)
	}
	if got := f.Value.String(); got != "30s" {
		t.Errorf("housekeeping_interval %s after --housekeeping-interval=30s, want 30s", got)
	}
}
