// Package version holds the build identity of the cluster binary.
// The variables are set with -ldflags -X by scripts/build.
package version

import "fmt"

var (
	// Version is the cluster release, e.g. v0.1.0.
	Version = "v0.0.0-dev"
	// GitCommit is the commit the binary was built from.
	GitCommit = "unknown"
	// Kubernetes is the upstream Kubernetes release embedded in the binary.
	Kubernetes = "v1.37.2"
)

// String is the one-line identity printed by `cluster version` and in logs.
func String() string {
	return fmt.Sprintf("cluster %s (%s), Kubernetes %s", Version, GitCommit, Kubernetes)
}
