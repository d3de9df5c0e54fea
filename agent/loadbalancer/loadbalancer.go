// Package loadbalancer is the agent's client-side load balancer: a TCP
// proxy on loopback that the kubelet, kube-proxy and flannel use to reach
// the apiserver. It knows every server (the one given, plus the addresses
// the apiservers advertise in the "kubernetes" EndpointSlices) and dials
// the next one when the one in use does not answer. TLS passes through:
// the apiserver's certificate names 127.0.0.1.
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cluster-io/cluster/internal/fileutil"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("loadbalancer")

const dialTimeout = 3 * time.Second

// LoadBalancer proxies loopback connections to one of the servers.
type LoadBalancer struct {
	listenAddr string
	fixed      string // the server the node was given; always kept
	// StateFile, if set, keeps the known servers (one host:port per line)
	// for the next start: a node restarted while its given server is down
	// joins through another (ReadServers).
	StateFile string

	mu       sync.Mutex
	servers  []string // host:port, the one in use first
	listener net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	saved    bool // StateFile written
}

// New returns a balancer that will listen on 127.0.0.1:port and forward to
// the server URLs given (the first is the one the node was given).
func New(port int, serverURLs []string) (*LoadBalancer, error) {
	lb := &LoadBalancer{listenAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), conns: map[net.Conn]struct{}{}}
	for _, u := range serverURLs {
		hp, err := hostPort(u)
		if err != nil {
			return nil, err
		}
		if lb.fixed == "" {
			lb.fixed = hp
		}
		if !slices.Contains(lb.servers, hp) {
			lb.servers = append(lb.servers, hp)
		}
	}
	if len(lb.servers) == 0 {
		return nil, errors.New("load balancer: no server")
	}
	return lb, nil
}

func hostPort(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("load balancer: server %q is not a URL", serverURL)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// URL is what the node's components use as the apiserver.
func (lb *LoadBalancer) URL() string { return "https://" + lb.listenAddr }

// Servers returns the servers, the one in use first.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// SetServers replaces the known servers (host:port) with these plus the one
// the node was given, keeping the one in use first if it is still known.
func (lb *LoadBalancer) SetServers(servers []string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	next := []string{}
	if len(lb.servers) > 0 && (lb.servers[0] == lb.fixed || slices.Contains(servers, lb.servers[0])) {
		next = append(next, lb.servers[0])
	}
	for _, s := range append(slices.Clone(servers), lb.fixed) {
		if !slices.Contains(next, s) {
			next = append(next, s)
		}
	}
	changed := !slices.Equal(next, lb.servers)
	if changed {
		log.Infof("servers: %v", next)
	}
	if (changed || !lb.saved) && lb.StateFile != "" {
		lb.saved = true
		if err := fileutil.WriteAtomic(lb.StateFile, []byte(strings.Join(next, "\n")+"\n"), 0o600); err != nil {
			log.Warnf("remember the servers: %v", err)
		}
	}
	lb.servers = next
}

// ReadServers returns the servers a StateFile remembers, as https URLs.
func ReadServers(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var urls []string
	for _, l := range strings.Fields(string(b)) {
		if _, _, err := net.SplitHostPort(l); err == nil {
			urls = append(urls, "https://"+l)
		}
	}
	return urls
}

// Name implements component.Component.
func (lb *LoadBalancer) Name() string { return "loadbalancer" }

// Start listens and serves in the background.
func (lb *LoadBalancer) Start(context.Context) error {
	l, err := net.Listen("tcp", lb.listenAddr)
	if err != nil {
		return fmt.Errorf("load balancer: %w (another agent on this host? set --lb-server-port)", err)
	}
	lb.mu.Lock()
	lb.listener = l
	lb.mu.Unlock()
	log.Infof("%s → %v", lb.listenAddr, lb.Servers())
	go lb.serve(l)
	return nil
}

// Ready implements component.Component: it serves once it listens.
func (lb *LoadBalancer) Ready(context.Context) error { return nil }

// Stop closes the listener and every proxied connection.
func (lb *LoadBalancer) Stop() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil
	}
	lb.closed = true
	if lb.listener != nil {
		lb.listener.Close()
	}
	for c := range lb.conns {
		c.Close()
	}
	return nil
}

func (lb *LoadBalancer) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed
		}
		go lb.proxy(c)
	}
}

func (lb *LoadBalancer) track(c net.Conn, add bool) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if add {
		if lb.closed {
			return false
		}
		lb.conns[c] = struct{}{}
	} else {
		delete(lb.conns, c)
	}
	return true
}

func (lb *LoadBalancer) proxy(client net.Conn) {
	defer client.Close()
	server, err := lb.dial()
	if err != nil {
		log.Debugf("no server answers: %v", err)
		return
	}
	defer server.Close()
	if !lb.track(client, true) || !lb.track(server, true) {
		return
	}
	defer lb.track(client, false)
	defer lb.track(server, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// dial connects to the server in use, or else to the next one that
// answers, which then becomes the one in use.
func (lb *LoadBalancer) dial() (net.Conn, error) {
	var errs []error
	for _, s := range lb.Servers() {
		c, err := net.DialTimeout("tcp", s, dialTimeout)
		if err == nil {
			lb.prefer(s)
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (lb *LoadBalancer) prefer(s string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if len(lb.servers) == 0 || lb.servers[0] == s {
		return
	}
	i := slices.Index(lb.servers, s)
	if i < 0 {
		return
	}
	log.Infof("server %s does not answer; using %s", lb.servers[0], s)
	lb.servers = append([]string{s}, slices.Delete(slices.Clone(lb.servers), i, i+1)...)
}

// FollowServers keeps the server list equal to the apiservers' advertised
// addresses (EndpointSlices of the default/kubernetes Service) until ctx
// ends. c should reach the API through the balancer itself.
func (lb *LoadBalancer) FollowServers(ctx context.Context, c kubernetes.Interface, every time.Duration) {
	for {
		if servers, err := apiServers(ctx, c); err == nil && len(servers) > 0 {
			lb.SetServers(servers)
		} else if err != nil {
			log.Debugf("read the apiservers' addresses: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func apiServers(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	slices_, err := c.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=kubernetes",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range slices_.Items {
		for _, p := range es.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != "https") {
				continue
			}
			for _, e := range es.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
