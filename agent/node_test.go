package agent

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cluster-io/cluster/component"
)

// A runtime prepared before the join (the server's own node) must be for
// the node the join describes; otherwise Start refuses, naming both, and
// writes nothing.
func TestStartRefusesARuntimePreparedForAnotherNode(t *testing.T) {
	dir := t.TempDir()
	n := Node{
		DataDir:     dir,
		ClusterCIDR: "10.42.0.0/16",
		ServiceCIDR: "10.43.0.0/16",
		Prepared:    &Prepared{runtime: Runtime{DataDir: dir, ClusterCIDR: "10.52.0.0/16", ServiceCIDR: "10.43.0.0/16"}},
	}
	err := Start(context.Background(), component.NewManager(), n)
	if err == nil || !strings.Contains(err.Error(), "10.52.0.0/16") || !strings.Contains(err.Error(), "10.42.0.0/16") {
		t.Fatalf("Start = %v, want a refusal naming both cluster CIDRs", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Start wrote %v before refusing", entries)
	}
}
