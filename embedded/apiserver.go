package embedded

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
