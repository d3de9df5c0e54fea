package server

import (
	"sort"
	"strings"
)

// flagArgs renders a flag map as argv, sorted for stable logs and tests,
// after applying the user's name=value overrides (--kube-*-arg). A user
// value replaces ours for the same flag, as in k3s; a new flag is added.
func flagArgs(defaults map[string]string, overrides []string) []string {
	merged := make(map[string]string, len(defaults)+len(overrides))
	for k, v := range defaults {
		merged[k] = v
	}
	for _, o := range overrides {
		name, value, _ := strings.Cut(strings.TrimLeft(o, "-"), "=")
		merged[name] = value
	}
	names := make([]string, 0, len(merged))
	for k := range merged {
		names = append(names, k)
	}
	sort.Strings(names)
	args := make([]string, 0, len(names))
	for _, k := range names {
		args = append(args, "--"+k+"="+merged[k])
	}
	return args
}
