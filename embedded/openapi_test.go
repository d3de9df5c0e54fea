package embedded

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	restful "github.com/emicklei/go-restful/v3"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/mux"
	builder2 "k8s.io/kube-openapi/pkg/builder"
	"k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

type widget struct {
	Name string `json:"name"`
}

func (widget) OpenAPIModelName() string { return "io.cluster.test.Widget" }

// openAPITestServer is a go-restful container with one route, a mux, and
// an OpenAPI config that counts how often the definitions are built.
func openAPITestServer(builds *atomic.Int32) (*restful.Container, *mux.PathRecorderMux, *common.Config) {
	ws := new(restful.WebService).Path("/apis/test.cluster.io/v1")
	ws.Route(ws.GET("/widgets").Operation("listWidgets").
		To(func(*restful.Request, *restful.Response) {}).
		Writes(widget{}).Returns(http.StatusOK, "OK", widget{}))
	c := restful.NewContainer()
	c.Add(ws)
	config := &common.Config{
		Info: &spec.Info{InfoProps: spec.InfoProps{Title: "test", Version: "v1"}},
		GetDefinitions: func(common.ReferenceCallback) map[string]common.OpenAPIDefinition {
			builds.Add(1)
			return map[string]common.OpenAPIDefinition{"io.cluster.test.Widget": {Schema: spec.Schema{SchemaProps: spec.SchemaProps{
				Type:       []string{"object"},
				Properties: map[string]spec.Schema{"name": {SchemaProps: spec.SchemaProps{Type: []string{"string"}}}},
			}}}}
		},
	}
	return c, mux.NewPathRecorderMux("test"), config
}

// get asks h for path, accepting the given media type.
func get(t *testing.T, h http.Handler, path, accept string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestOpenAPIV2IsBuiltAtTheFirstRequestOnly(t *testing.T) {
	var builds atomic.Int32
	c, m, config := openAPITestServer(&builds)
	serveOpenAPIV2Lazily(c, m, config)
	if n := builds.Load(); n != 0 {
		t.Fatalf("document built %d times before any request, want 0", n)
	}

	code, body := get(t, m, "/openapi/v2", "application/json")
	if code != http.StatusOK {
		t.Fatalf("GET /openapi/v2 = %d: %s", code, body)
	}
	for _, want := range []string{`"/apis/test.cluster.io/v1/widgets"`, `"listWidgets"`, `"io.cluster.test.Widget"`} {
		if !strings.Contains(body, want) {
			t.Errorf("document lacks %s:\n%s", want, body)
		}
	}
	if code, _ := get(t, m, "/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"); code != http.StatusOK {
		t.Errorf("GET /openapi/v2 as protobuf = %d", code)
	}
	if _, again := get(t, m, "/openapi/v2", "application/json"); again != body {
		t.Error("the second answer differs from the first")
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("document built %d times for three requests, want 1", n)
	}
}

func TestOpenAPIV2BuildErrorIs503(t *testing.T) {
	var builds atomic.Int32
	c, m, config := openAPITestServer(&builds)
	config.GetDefinitions = func(common.ReferenceCallback) map[string]common.OpenAPIDefinition { return nil } // Widget undefined
	serveOpenAPIV2Lazily(c, m, config)
	if code, body := get(t, m, "/openapi/v2", "application/json"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /openapi/v2 with a broken config = %d, want 503: %s", code, body)
	}
}

func TestTakeOverOpenAPI(t *testing.T) {
	v2, v3 := &common.Config{}, &common.OpenAPIV3Config{}
	for _, tc := range []struct {
		name     string
		config   genericapiserver.Config
		wantSkip bool
		want     lazyOpenAPI
	}{
		{"both documents", genericapiserver.Config{OpenAPIConfig: v2, OpenAPIV3Config: v3}, true, lazyOpenAPI{v2: v2, v3: v3}},
		{"v2 only", genericapiserver.Config{OpenAPIConfig: v2}, true, lazyOpenAPI{v2: v2}},
		{"no OpenAPI: nothing to install", genericapiserver.Config{}, false, lazyOpenAPI{}},
		{"already skipped: left to whoever skipped it", genericapiserver.Config{OpenAPIConfig: v2, SkipOpenAPIInstallation: true}, true, lazyOpenAPI{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := takeOverOpenAPI(&tc.config)
			if got != tc.want {
				t.Errorf("takeOverOpenAPI = %+v, want %+v", got, tc.want)
			}
			if tc.config.SkipOpenAPIInstallation != tc.wantSkip {
				t.Errorf("SkipOpenAPIInstallation = %v, want %v", tc.config.SkipOpenAPIInstallation, tc.wantSkip)
			}
		})
	}
}

// sentinel is put in a definition no route refers to: it is garbage once a
// build is done, unless something keeps the build's definitions map.
type sentinel struct {
	Name string // exported: a document with it must marshal
	_    [48]byte
}

func definitionsWithSentinel(collected *atomic.Bool) common.GetOpenAPIDefinitions {
	return func(common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		s := new(sentinel)
		runtime.SetFinalizer(s, func(*sentinel) { collected.Store(true) })
		object := spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"}}}
		return map[string]common.OpenAPIDefinition{
			"io.cluster.test.Widget": {Schema: object},
			"io.cluster.test.Unused": {Schema: spec.Schema{VendorExtensible: spec.VendorExtensible{Extensions: spec.Extensions{"x-sentinel": s}}}},
		}
	}
}

func waitCollected(collected *atomic.Bool) bool {
	for range 50 {
		runtime.GC()
		if collected.Load() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Upstream's default configs name GetOperationIDAndTags; kube-openapi's
// builders then set GetOperationIDAndTagsFromRoute on the shared config as a
// closure over their first build, which kept that build's definitions map.
func TestOpenAPIConfigsKeepNoBuildAlive(t *testing.T) {
	operationID := func(r *restful.Route) (string, []string, error) { return "op-" + r.Operation, []string{"widgets"}, nil }
	var routes []common.RouteContainer
	{
		var builds atomic.Int32
		c, _, _ := openAPITestServer(&builds)
		routes = restfuladapter.AdaptWebServices(c.RegisteredWebServices())
	}
	var v2collected, v3collected atomic.Bool
	generic := &genericapiserver.Config{
		OpenAPIConfig: &common.Config{Info: &spec.Info{}, GetDefinitions: definitionsWithSentinel(&v2collected),
			GetOperationIDAndTags: operationID},
		OpenAPIV3Config: &common.OpenAPIV3Config{Info: &spec.Info{}, GetDefinitions: definitionsWithSentinel(&v3collected),
			GetOperationIDAndTags: operationID},
	}
	takeOverOpenAPI(generic)

	v2, err := builder2.BuildOpenAPISpecFromRoutes(routes, generic.OpenAPIConfig)
	if err != nil {
		t.Fatal(err)
	}
	v3, err := builder3.BuildOpenAPISpecFromRoutes(routes, generic.OpenAPIV3Config)
	if err != nil {
		t.Fatal(err)
	}
	// The operation IDs still come from the config's function.
	if op := v2.Paths.Paths["/apis/test.cluster.io/v1/widgets"].Get; op == nil || op.ID != "op-listWidgets" || len(op.Tags) != 1 {
		t.Errorf("v2 operation = %+v, want ID op-listWidgets, tag widgets", op)
	}
	if p := v3.Paths.Paths["/apis/test.cluster.io/v1/widgets"]; p == nil || p.Get == nil || p.Get.OperationId != "op-listWidgets" {
		t.Errorf("v3 path = %+v, want operation op-listWidgets", p)
	}
	if !waitCollected(&v2collected) {
		t.Error("the v2 build's definitions map is still reachable after the build")
	}
	if !waitCollected(&v3collected) {
		t.Error("the v3 build's definitions map is still reachable after the build")
	}
	runtime.KeepAlive(generic)
	runtime.KeepAlive(v2)
	runtime.KeepAlive(v3)

	// Any other route type is refused, as upstream's adapter refuses it.
	if _, _, err := generic.OpenAPIConfig.GetOperationIDAndTagsFromRoute(nil); err == nil {
		t.Error("a non-restful route was accepted")
	}
}

// The v3 handler (upstream's handler3) must serve a group's whole document,
// JSON and protobuf, before and after the document's objects are released,
// and the released objects must be garbage.
func TestOpenAPIV3ServedAfterRelease(t *testing.T) {
	var builds atomic.Int32
	c, m, _ := openAPITestServer(&builds)
	var collected atomic.Bool
	config := &common.OpenAPIV3Config{
		Info: &spec.Info{InfoProps: spec.InfoProps{Title: "test", Version: "v1"}},
		GetDefinitions: func(common.ReferenceCallback) map[string]common.OpenAPIDefinition {
			s := new(sentinel) // in the document's Widget schema: garbage only once the document is
			runtime.SetFinalizer(s, func(*sentinel) { collected.Store(true) })
			return map[string]common.OpenAPIDefinition{"io.cluster.test.Widget": {Schema: spec.Schema{
				VendorExtensible: spec.VendorExtensible{Extensions: spec.Extensions{"x-sentinel": s}},
				SchemaProps:      spec.SchemaProps{Type: []string{"object"}},
			}}}
		},
	}
	if _, err := serveOpenAPIV3(c, m, config); err != nil {
		t.Fatal(err)
	}
	const group = "/openapi/v3/apis/test.cluster.io/v1"

	code, index := get(t, m, "/openapi/v3", "application/json")
	if code != http.StatusOK || !strings.Contains(index, `"apis/test.cluster.io/v1"`) {
		t.Fatalf("GET /openapi/v3 = %d:\n%s", code, index)
	}
	code, doc := get(t, m, group, "application/json")
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", group, code, doc)
	}
	for _, want := range []string{`"/apis/test.cluster.io/v1/widgets"`, `"listWidgets"`, `"io.cluster.test.Widget"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %s:\n%s", want, doc)
		}
	}
	if !waitCollected(&collected) {
		t.Error("the document's objects are still reachable after the handler made its JSON")
	}
	if _, again := get(t, m, group, "application/json"); again != doc {
		t.Errorf("after the release the document reads\n%s\nwant\n%s", again, doc)
	}
	if code, pb := get(t, m, group, "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"); code != http.StatusOK || !strings.Contains(pb, "listWidgets") {
		t.Errorf("GET %s as protobuf = %d:\n%q", group, code, pb)
	}
	if _, again := get(t, m, "/openapi/v3", "application/json"); again != index {
		t.Errorf("the index changed after the release:\n%s\nwant\n%s", again, index)
	}
}
