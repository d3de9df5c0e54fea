// Package servicelb is the service load balancer for clusters without a
// cloud: a Service of type LoadBalancer gets the addresses of the Ready
// nodes as its ingress IPs (k3s's servicelb gives the same answer). No pod
// and no image is needed: kube-proxy, on every node, already sends traffic
// for a LoadBalancer ingress IP and the Service's port to the endpoints.
//
// Two LoadBalancer Services cannot share a port and protocol on the same
// addresses: the older one keeps it and the newer one stays pending, with
// an event that says why. A Service with a loadBalancerClass belongs to
// another load balancer and is left alone; so is everything when the
// component is disabled (--disable servicelb).
package servicelb

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corecontrollers "github.com/rancher/wrangler/v3/pkg/generated/controllers/core"
	corev1controllers "github.com/rancher/wrangler/v3/pkg/generated/controllers/core/v1"
	"github.com/rancher/wrangler/v3/pkg/start"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("servicelb")

// Run runs the controller until ctx ends.
func Run(ctx context.Context, cfg *rest.Config) error {
	factory, err := corecontrollers.NewFactoryFromConfig(cfg)
	if err != nil {
		return fmt.Errorf("servicelb: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("servicelb: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c := &controller{
		services: factory.Core().V1().Service(),
		nodes:    factory.Core().V1().Node(),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "servicelb"}),
	}
	c.services.OnChange(ctx, "servicelb", c.onService)
	c.nodes.OnChange(ctx, "servicelb-nodes", c.onNode)
	if err := start.All(ctx, 1, factory); err != nil {
		return fmt.Errorf("servicelb: %w", err)
	}
	<-ctx.Done()
	return nil
}

type controller struct {
	services corev1controllers.ServiceController
	nodes    corev1controllers.NodeController
	recorder record.EventRecorder
}

func ours(svc *corev1.Service) bool {
	return svc != nil && svc.DeletionTimestamp == nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// onNode re-examines every LoadBalancer Service when a node changes: their
// ingress IPs follow the Ready nodes.
func (c *controller) onNode(_ string, _ *corev1.Node) (*corev1.Node, error) {
	svcs, err := c.services.Cache().List("", labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, s := range svcs {
		if ours(s) {
			c.services.Enqueue(s.Namespace, s.Name)
		}
	}
	return nil, nil
}

func (c *controller) onService(_ string, svc *corev1.Service) (*corev1.Service, error) {
	if !ours(svc) {
		return svc, nil
	}
	want, err := c.ingress(svc)
	if err != nil {
		return svc, err
	}
	if slices.EqualFunc(svc.Status.LoadBalancer.Ingress, want, func(a, b corev1.LoadBalancerIngress) bool { return a.IP == b.IP }) {
		return svc, nil
	}
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = want
	updated, err := c.services.UpdateStatus(svc)
	if err == nil {
		log.Infof("%s/%s: ingress %v", svc.Namespace, svc.Name, ips(want))
	}
	return updated, err
}

// ingress is what svc should announce: the Ready nodes' addresses, unless
// an older LoadBalancer Service holds one of its ports.
func (c *controller) ingress(svc *corev1.Service) ([]corev1.LoadBalancerIngress, error) {
	others, err := c.services.Cache().List("", labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if !ours(o) || o.UID == svc.UID || !older(o, svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, q := range o.Spec.Ports {
				if p.Port == q.Port && p.Protocol == q.Protocol {
					c.recorder.Eventf(svc, corev1.EventTypeWarning, "PortInUse", "port %d/%s is held by LoadBalancer Service %s/%s; this one stays pending", p.Port, p.Protocol, o.Namespace, o.Name)
					return nil, nil
				}
			}
		}
	}
	nodes, err := c.nodes.Cache().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, n := range nodes {
		if ip := nodeAddress(n); ip != "" && ready(n) && !n.Spec.Unschedulable {
			addrs = append(addrs, ip)
		}
	}
	sort.Strings(addrs)
	var out []corev1.LoadBalancerIngress
	vip := corev1.LoadBalancerIPModeVIP
	for _, a := range slices.Compact(addrs) {
		out = append(out, corev1.LoadBalancerIngress{IP: a, IPMode: &vip})
	}
	return out, nil
}

func older(a, b *corev1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// nodeAddress prefers a node's external IP (--node-external-ip), as k3s does.
func nodeAddress(n *corev1.Node) string {
	if ip := n.Labels[agent.ExternalIPLabel]; ip != "" {
		return ip
	}
	internal := ""
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeExternalIP:
			return a.Address
		case corev1.NodeInternalIP:
			if internal == "" {
				internal = a.Address
			}
		}
	}
	return internal
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func ips(in []corev1.LoadBalancerIngress) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.IP)
	}
	return out
}
