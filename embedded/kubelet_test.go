package embedded

import (
	"context"
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
