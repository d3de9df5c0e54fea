// Command coredns is CoreDNS with the plugins the cluster's DNS uses, for
// the image the node makes from the bundle (localhost/cluster/coredns):
// nothing is pulled. A module of its own, like crictl: CoreDNS brings its
// own Kubernetes client libraries.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins of charts/coredns.yaml's Corefile, and a few a user's
	// Corefile commonly adds.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
)

// The order in which the plugins handle a query: upstream's plugin.cfg
// order, for the plugins linked here.
func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "errors", "log", "loadbalance", "cache",
		"rewrite", "template", "hosts", "kubernetes", "loop", "forward",
	}
}

func main() {
	coremain.Run()
}
