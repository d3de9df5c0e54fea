package main

import (
	"fmt"
	"os"
	"strconv"
)

// envShimProcessors is the server's and agent's CLUSTER_SHIM_GOMAXPROCS,
// which containerd passes on to the shims it starts: how many processors a
// shim's Go code runs on. "off" keeps upstream's.
const envShimProcessors = "CLUSTER_SHIM_GOMAXPROCS"

// defaultShimProcessors: upstream's shim manager starts every pod's shim
// with GOMAXPROCS=4, whatever the host has. A shim serves one pod: a few
// requests a minute (stats, status) and the copying of its containers'
// output, which waits on I/O. With one processor, each request wakes one
// thread instead of making idle ones spin for work.
const defaultShimProcessors = 1

// shimProcessors is the GOMAXPROCS a shim sets for itself; 0 leaves the
// one it was started with. A value the server or agent would have refused
// at its start cannot reach a shim, so one that does not parse means the
// default, reported on stderr (the shim's log).
func shimProcessors() int {
	v := os.Getenv(envShimProcessors)
	switch v {
	case "":
		return defaultShimProcessors
	case "off":
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "containerd-shim-runc-v2: %s=%q is not a number of processors; using %d\n", envShimProcessors, v, defaultShimProcessors)
		return defaultShimProcessors
	}
	return n
}
