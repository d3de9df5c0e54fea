package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/subnet"
)

func TestWriteCNIConfig(t *testing.T) {
	dir := t.TempDir()
	c := Config{Dir: filepath.Join(dir, "flannel"), CNIConfDir: filepath.Join(dir, "net.d"), CNIDataDir: filepath.Join(dir, "cni")}
	if err := c.WriteCNIConfig(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(c.CNIConfDir)
	if len(entries) != 1 || entries[0].Name() != "10-flannel.conflist" {
		t.Fatalf("conf dir holds %v; want only the conflist", entries)
	}
	var conf struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	b, _ := os.ReadFile(filepath.Join(c.CNIConfDir, "10-flannel.conflist"))
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 3 || conf.Plugins[0]["type"] != "flannel" || conf.Plugins[0]["subnetFile"] != c.SubnetFile() {
		t.Errorf("conflist %s", b)
	}
	if conf.Plugins[0]["ipamDataDir"] != filepath.Join(c.CNIDataDir, "networks") {
		t.Errorf("host-local state is not kept under the data dir: %s", b)
	}
}

// fakeManager fails AcquireLease with each of errs in turn, then grants.
type fakeManager struct {
	subnet.Manager
	errs  []error
	calls int
}

func (f *fakeManager) AcquireLease(context.Context, *lease.LeaseAttrs) (*lease.Lease, error) {
	f.calls++
	if f.calls <= len(f.errs) {
		return nil, f.errs[f.calls-1]
	}
	return &lease.Lease{}, nil
}

func TestAcquireLeaseWaitsOutTheInformer(t *testing.T) {
	notYet := errors.New(`node "n" pod cidr not assigned`)
	other := errors.New("patch node: forbidden")
	tests := []struct {
		name      string
		errs      []error
		wantErr   error
		wantCalls int
	}{
		{"granted at once", nil, nil, 1},
		{"informer behind twice", []error{notYet, notYet}, nil, 3},
		{"other errors are final", []error{other}, other, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeManager{errs: tt.errs}
			l, err := informerLagTolerant{f}.AcquireLease(context.Background(), &lease.LeaseAttrs{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && l == nil {
				t.Fatal("no lease")
			}
			if f.calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", f.calls, tt.wantCalls)
			}
		})
	}
}
