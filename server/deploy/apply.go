// Package deploy applies the embedded manifests (charts/) to the cluster
// with server-side apply.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/cluster-io/cluster/charts"
)

// FieldManager owns the fields we apply.
const FieldManager = "cluster"

// Apply applies every embedded manifest.
func Apply(ctx context.Context, cfg *rest.Config) error {
	manifests, err := charts.All()
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, m := range manifests {
		objs, err := decode(m.Data)
		if err != nil {
			return fmt.Errorf("charts/%s: %w", m.Name, err)
		}
		for _, obj := range objs {
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return fmt.Errorf("charts/%s: %s: %w", m.Name, gvk.Kind, err)
			}
			var ri dynamic.ResourceInterface = client.Resource(mapping.Resource)
			if ns := obj.GetNamespace(); ns != "" {
				ri = client.Resource(mapping.Resource).Namespace(ns)
			}
			if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
				return fmt.Errorf("charts/%s: apply %s %s: %w", m.Name, gvk.Kind, obj.GetName(), err)
			}
		}
	}
	return nil
}

func decode(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := d.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		out = append(out, obj)
	}
}
