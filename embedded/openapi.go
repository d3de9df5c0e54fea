package embedded

import (
	"fmt"
	"sync"
	_ "unsafe" // go:linkname, below

	restful "github.com/emicklei/go-restful/v3"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/mux"
	"k8s.io/klog/v2"
	builder2 "k8s.io/kube-openapi/pkg/builder"
	"k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/cached"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/handler"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// The kube APIs' server builds its OpenAPI documents when it prepares to
// run and holds them, as objects, for the life of the process, beside the
// JSON it serves. Here the same documents are made by upstream's builders
// from the same routes and config, and held for less:
//   - v2 (/openapi/v2, every built-in resource in one document, ~15 MB of
//     heap) is built at its first request: kubectl validates and explains
//     with v3, and the aggregator asks for it only to answer a request for
//     /openapi/v2 (upstream's OpenAPIV2LazyBuild proposal does the same);
//   - v3 (/openapi/v3/<group>/<version>) is built at start, as upstream does
//     (the admission plugins read its index every few seconds, and the index
//     names each document's hash), and each document's objects are dropped
//     once the handler has made its JSON (releasedOnceServed, ~13 MB);
//   - the v3 config's precomputed definitions (every built-in type's
//     schema), which only the builds at start read, are dropped after them.
//
// Both configs (shared by the aggregator, the kube APIs and apiextensions)
// also get the route-based operation-ID function before anything is built:
// kube-openapi's builders add it at their first build as a closure over that
// build's state, so the shared config kept that build's whole definitions
// map (every built-in type's schema) and document alive for the life of the
// process, once for v2 and once for v3.

// lazyOpenAPI is the OpenAPI set-up taken over from one server.
type lazyOpenAPI struct {
	v2 *common.Config
	v3 *common.OpenAPIV3Config
}

// takeOverOpenAPI makes the server built from generic skip its own OpenAPI
// installation, for lazyOpenAPI.install to do it. Like takeOverBootstrapHooks
// it must run after NewConfig, which copied the generic config into the
// aggregator's and apiextensions' configs: those keep theirs (apiextensions
// needs its built document for its CRD controller; the aggregator never
// installs its own). It also gives the shared configs the operation-ID
// function (see above).
func takeOverOpenAPI(generic *genericapiserver.Config) lazyOpenAPI {
	if c := generic.OpenAPIConfig; c != nil && c.GetOperationIDAndTagsFromRoute == nil && c.GetOperationIDAndTags != nil {
		c.GetOperationIDAndTagsFromRoute = operationIDsFromRestfulRoutes(c.GetOperationIDAndTags)
	}
	if c := generic.OpenAPIV3Config; c != nil && c.GetOperationIDAndTagsFromRoute == nil && c.GetOperationIDAndTags != nil {
		c.GetOperationIDAndTagsFromRoute = operationIDsFromRestfulRoutes(c.GetOperationIDAndTags)
	}
	if generic.SkipOpenAPIInstallation || (generic.OpenAPIConfig == nil && generic.OpenAPIV3Config == nil) {
		return lazyOpenAPI{}
	}
	generic.SkipOpenAPIInstallation = true
	return lazyOpenAPI{v2: generic.OpenAPIConfig, v3: generic.OpenAPIV3Config}
}

// install serves /openapi/v2 (built at its first request) and /openapi/v3
// on the kube APIs' server, the delegate of the aggregator chain. It must
// run after the server is built, when its routes are all registered.
func (o lazyOpenAPI) install(aggregator *genericapiserver.GenericAPIServer) error {
	if o.v2 == nil && o.v3 == nil {
		return nil
	}
	kube, ok := aggregator.NextDelegate().(*genericapiserver.GenericAPIServer)
	if !ok {
		return fmt.Errorf("openapi: the aggregator's delegate is a %T, not the kube APIs' server", aggregator.NextDelegate())
	}
	if o.v2 != nil {
		kube.OpenAPIVersionedService = serveOpenAPIV2Lazily(kube.Handler.GoRestfulContainer, kube.Handler.NonGoRestfulMux, o.v2)
	}
	if o.v3 != nil {
		service, err := serveOpenAPIV3(kube.Handler.GoRestfulContainer, kube.Handler.NonGoRestfulMux, o.v3)
		if err != nil {
			return err
		}
		kube.OpenAPIV3VersionedService = service
	}
	return nil
}

// started drops the v3 config's precomputed definitions once every server
// of the chain has built its documents (after PrepareRun). A later build,
// if any, makes them again from the config's GetDefinitions, as a config
// without them does.
func (o lazyOpenAPI) started() {
	if o.v3 != nil && o.v3.GetDefinitions != nil {
		o.v3.Definitions = nil
	}
}

// serveOpenAPIV2Lazily is upstream's routes.OpenAPI.InstallV2, with the
// document built once, at the first request, and kept from then on. A
// build error (upstream stops the process for it at start) is logged and
// answered with 503.
func serveOpenAPIV2Lazily(c *restful.Container, m *mux.PathRecorderMux, config *common.Config) *handler.OpenAPIService {
	build := cached.Func(func() (*spec.Swagger, string, error) {
		swagger, err := builder2.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices(c.RegisteredWebServices()), config)
		if err != nil {
			klog.Errorf("kube-apiserver: building the OpenAPI v2 document: %v", err)
			return nil, "", fmt.Errorf("build OpenAPI v2: %w", err)
		}
		swagger.Definitions = handler.PruneDefaults(swagger.Definitions)
		// The document never changes once built: one etag for its life.
		return swagger, "built-once", nil
	})
	service := handler.NewOpenAPIServiceLazy(cached.Once(build))
	service.RegisterOpenAPIVersionedService("/openapi/v2", m)
	return service
}

// operationIDsFromRestfulRoutes is the adapter kube-openapi's builders make
// from a config's GetOperationIDAndTags, without their closure over the
// build (see above).
func operationIDsFromRestfulRoutes(get func(*restful.Route) (string, []string, error)) func(common.Route) (string, []string, error) {
	return func(r common.Route) (string, []string, error) {
		route, ok := r.(*restfuladapter.RouteAdapter)
		if !ok {
			return "", nil, fmt.Errorf("config.GetOperationIDAndTags specified but route is not a restful v1 Route")
		}
		return get(route.Route)
	}
}

// serveOpenAPIV3 is upstream's routes.OpenAPI.InstallV3 (the same builds,
// the same filtering of each document's cross-registered kinds), with each
// document handed to the handler as a releasedOnceServed.
func serveOpenAPIV3(c *restful.Container, m *mux.PathRecorderMux, config *common.OpenAPIV3Config) (*handler3.OpenAPIService, error) {
	service := handler3.NewOpenAPIService()
	if err := service.RegisterOpenAPIV3VersionedService("/openapi/v3", m); err != nil {
		return nil, fmt.Errorf("openapi v3: %w", err)
	}
	grouped := map[string]*restful.WebService{} // by group version; the last one wins, as upstream's
	for _, ws := range c.RegisteredWebServices() {
		grouped[ws.RootPath()[1:]] = ws
	}
	for gv, ws := range grouped {
		doc, err := builder3.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices([]*restful.WebService{ws}), config)
		if err != nil {
			klog.Errorf("kube-apiserver: building the OpenAPI v3 document of %s: %v", gv, err)
			continue
		}
		if group, version, ok := groupVersionFromPath(gv); ok {
			filterScopedGVKs(doc, group, version)
		}
		service.UpdateGroupVersionLazy(gv, &releasedOnceServed{doc: doc})
	}
	return service, nil
}

// releasedOnceServed hands one built document to handler3, which makes the
// document's JSON at its first Get and from then on calls Get only to
// compare etags: its JSON (and the protobuf it makes from that JSON) is
// what it serves. So the second Get empties the document, and its objects
// are garbage. The etag never changes, so the handler never marshals the
// emptied document (TestOpenAPIV3ServedAfterRelease runs the handler).
type releasedOnceServed struct {
	mu   sync.Mutex
	doc  *spec3.OpenAPI
	gets int
}

func (r *releasedOnceServed) Get() (*spec3.OpenAPI, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gets++; r.gets == 2 {
		*r.doc = spec3.OpenAPI{}
	}
	return r.doc, "built-once", nil
}

// groupVersionFromPath and filterScopedGVKs are upstream's, from the
// InstallV3 they serve.
//
//go:linkname groupVersionFromPath k8s.io/apiserver/pkg/server/routes.groupVersionFromPath
func groupVersionFromPath(path string) (group, version string, ok bool)

//go:linkname filterScopedGVKs k8s.io/apiserver/pkg/server/routes.filterScopedGVKs
func filterScopedGVKs(s *spec3.OpenAPI, group, version string)
