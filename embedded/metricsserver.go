package embedded

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app/options"
)

// RunMetricsServer runs metrics-server (an aggregated API server that
// scrapes the kubelets) with argv-style flags until ctx ends.
func RunMetricsServer(ctx context.Context, args []string) error {
	o := options.NewOptions()
	if _, err := parseFlags("metrics-server", o.Flags(), args); err != nil {
		return err
	}
	// Logging is the process's (see applyLogging); Validate applies the
	// defaults, which are the other daemons' too.
	if errs := o.Validate(); len(errs) > 0 {
		return fmt.Errorf("metrics-server: %w", errs[0])
	}
	cfg, err := o.ServerConfig()
	if err != nil {
		return fmt.Errorf("metrics-server: %w", err)
	}
	// metrics-server's generated OpenAPI definitions are keyed by Go path
	// ("k8s.io/metrics/pkg/apis/metrics/v1beta1.NodeMetrics"); the 1.37
	// libraries look its types up by their model names ("io.k8s.metrics…").
	// Offer both keys.
	for _, c := range []*common.Config{cfg.Apiserver.OpenAPIConfig} {
		if c != nil {
			c.GetDefinitions = withModelNames(c.GetDefinitions)
		}
	}
	if c := cfg.Apiserver.OpenAPIV3Config; c != nil {
		c.GetDefinitions = withModelNames(c.GetDefinitions)
		// Computed when the config was made; it takes precedence.
		c.Definitions = c.GetDefinitions(func(name string) spec.Ref {
			defName, _ := c.GetDefinitionName(name)
			return spec.MustCreateRef("#/components/schemas/" + common.EscapeJsonPointer(defName))
		})
	}
	s, err := cfg.Complete()
	if err != nil {
		return fmt.Errorf("metrics-server: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("metrics-server starting")
	if err := s.RunUntil(ctx.Done()); err != nil && ctx.Err() == nil {
		return fmt.Errorf("metrics-server: %w", err)
	}
	return nil
}

func withModelNames(get common.GetOpenAPIDefinitions) common.GetOpenAPIDefinitions {
	return func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		defs := get(ref)
		out := make(map[string]common.OpenAPIDefinition, 2*len(defs))
		for name, d := range defs {
			out[name] = d
			out[openapiutil.ToRESTFriendlyName(name)] = d
		}
		return out
	}
}
