package agent

import (
	"strings"
	"testing"

	"github.com/cluster-io/cluster/charts"
)

// The packaged CoreDNS runs the image every node makes: the names must match.
func TestCoreDNSManifestUsesTheNodeMadeImage(t *testing.T) {
	ms, err := charts.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == "coredns.yaml" {
			if !strings.Contains(string(m.Data), "image: "+CoreDNSImage+"\n") {
				t.Errorf("charts/coredns.yaml does not run %s", CoreDNSImage)
			}
			return
		}
	}
	t.Fatal("no charts/coredns.yaml")
}
