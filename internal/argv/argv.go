// Package argv renders daemon flags as argv, the way upstream daemons take them.
package argv

import (
	"sort"
	"strings"
)

// Merge renders a flag map as argv, sorted for stable logs and tests, after
// applying the user's name=value overrides (--kube-*-arg). A user value
// replaces ours for the same flag, as in k3s; a new flag is added.
func Merge(defaults map[string]string, overrides []string) []string {
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

// Value returns the value of --name=value in args, and whether it is there.
func Value(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}
