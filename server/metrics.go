package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cluster-io/cluster/embedded"
)

// serverID is a short, stable name for this server among those sharing a
// datastore (for per-server object names).
func serverID(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return hex.EncodeToString(sum[:])[:10]
}

// runMetricsServer runs metrics-server and, while it runs, keeps this
// server's address in an EndpointSlice of the metrics-server Service
// (charts/metrics-server.yaml), one per server: several servers each serve
// the metrics API, and none overwrites another's address.
func runMetricsServer(ctx context.Context, cfg *rest.Config, args []string, ip net.IP, port int, id string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("metrics-server: %w", err)
	}
	ready, https, tcp := true, "https", corev1.ProtocolTCP
	p := int32(port)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server-" + id, Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			discoveryv1.LabelServiceName: "metrics-server",
			discoveryv1.LabelManagedBy:   "cluster.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &https, Port: &p, Protocol: &tcp}},
	}
	slices := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem)
	go func() {
		for ctx.Err() == nil {
			_, err := slices.Create(ctx, slice, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				var old *discoveryv1.EndpointSlice
				if old, err = slices.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
					slice.ResourceVersion = old.ResourceVersion
					_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
				}
			}
			if err == nil {
				return
			}
			log.Warnf("metrics-server endpoint: %v (retrying)", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = slices.Delete(dctx, slice.Name, metav1.DeleteOptions{})
	}()
	return embedded.RunMetricsServer(ctx, args)
}
