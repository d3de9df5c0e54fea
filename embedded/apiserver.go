package embedded

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdopenapi "k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/klog/v2"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// RunAPIServer runs kube-apiserver with argv-style flags until ctx ends.
// routes are extra HTTP handlers, by exact path, that the apiserver serves
// behind its own authentication, authorization and limits (as it serves
// /healthz): how the join API shares the apiserver's port.
func RunAPIServer(ctx context.Context, args []string, routes map[string]http.Handler) error {
	ctx = klog.NewContext(ctx, klog.Background().WithName("kube-apiserver"))
	s := options.NewServerRunOptions()
	if _, err := parseFlags("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	// The apiserver's loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := applyLogging("kube-apiserver", s.Logs, featureGate); err != nil {
		return err
	}
	if err := shareETCDClients(); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if err := buildCRDDefinitionsNow(); err != nil {
		klog.Warningf("kube-apiserver: building a CRD's OpenAPI ahead: %v", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver: %w", utilerrors.NewAggregate(errs))
	}
	// apiserver.Run, with the routes added to the outermost server's mux.
	if completed.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
		completed.InformerName = name
	}
	config, err := apiserver.NewConfig(completed)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	hooks := takeOverBootstrapHooks(config.KubeAPIs.ControlPlane.Generic, config.KubeAPIs.ControlPlane.APIResourceConfigSource)
	openAPI := takeOverOpenAPI(config.KubeAPIs.ControlPlane.Generic)
	done, err := config.Complete()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	chain, err := apiserver.CreateServerChain(done)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	for path, h := range routes {
		chain.GenericAPIServer.Handler.NonGoRestfulMux.Handle(path, h)
	}
	if err := hooks.add(chain.GenericAPIServer); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if err := openAPI.install(chain.GenericAPIServer); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	openAPI.started()
	if err := prepared.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// buildCRDDefinitionsNow makes the apiextensions OpenAPI builder do, here
// and now, what it does once per process for the first CRD it builds:
// iterate client-go's global scheme. Libraries in this process register
// types in that scheme while it runs (sig-storage-lib-external-provisioner's
// NewProvisionController, behind local-storage), and one such write during
// that iteration crashed a server at start ("concurrent map iteration and
// map write", seen once in CI). Done before any other component starts, the
// iteration overlaps no write; it runs after the feature gates are set,
// which decide the definitions.
func buildCRDDefinitionsNow() error {
	crd := &apiextensionsv1.CustomResourceDefinition{Spec: apiextensionsv1.CustomResourceDefinitionSpec{
		Group: "warmup.cluster.io",
		Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Warmup", ListKind: "WarmupList", Plural: "warmups", Singular: "warmup"},
		Scope: apiextensionsv1.ClusterScoped,
		Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
			Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object"}}}},
	}}
	_, err := crdopenapi.BuildOpenAPIV3(crd, "v1", crdopenapi.Options{})
	return err
}
