package embedded

import (
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// After buildCRDDefinitionsNow, CRD OpenAPI builds no longer iterate the
// global scheme, so registering types there meanwhile (as local-storage's
// provisioner library does) cannot crash the process. Without the first
// call, this test dies with "concurrent map iteration and map write".
func TestCRDOpenAPIBuiltAheadOfSchemeWrites(t *testing.T) {
	if err := buildCRDDefinitionsNow(); err != nil {
		t.Fatalf("build a CRD's OpenAPI: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 20000 {
			_ = corev1.AddToScheme(scheme.Scheme)
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			if err := buildCRDDefinitionsNow(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
}
