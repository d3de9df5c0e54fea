package argv

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name      string
		defaults  map[string]string
		overrides []string
		want      []string
	}{
		{"defaults sorted", map[string]string{"b": "2", "a": "1"}, nil, []string{"--a=1", "--b=2"}},
		{"override replaces", map[string]string{"v": "0"}, []string{"v=4"}, []string{"--v=4"}},
		{"leading dashes accepted", map[string]string{"v": "0"}, []string{"--v=4"}, []string{"--v=4"}},
		{"new flag added", map[string]string{"a": "1"}, []string{"feature-gates=X=true,Y=false"}, []string{"--a=1", "--feature-gates=X=true,Y=false"}},
		{"last override wins", nil, []string{"a=1", "a=2"}, []string{"--a=2"}},
		{"bare name gets empty value", nil, []string{"profiling"}, []string{"--profiling="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(tt.defaults, tt.overrides); !slices.Equal(got, tt.want) {
				t.Errorf("Merge() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValue(t *testing.T) {
	args := []string{"--a=1", "--secure-port=10300"}
	if v, ok := Value(args, "secure-port"); !ok || v != "10300" {
		t.Errorf("Value(secure-port) = %q, %v", v, ok)
	}
	if _, ok := Value(args, "secure"); ok {
		t.Error("Value matched a prefix of a flag name")
	}
}
