package charts

import (
	"slices"
	"testing"
)

// The server applies NodeRBAC before its own node joins: a renamed file
// would silently leave the join waiting on the rest of the manifests.
func TestNodeRBACAreEmbeddedAndNeverDisabled(t *testing.T) {
	ms, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	for _, f := range NodeRBAC {
		if !slices.Contains(names, f) {
			t.Errorf("%s is not embedded (have %v)", f, names)
		}
		for comp, file := range Components {
			if file == f {
				t.Errorf("--disable=%s would remove %s, which nodes need to join", comp, f)
			}
		}
	}
}
