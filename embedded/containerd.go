package embedded

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"
	"github.com/urfave/cli/v3"
)

// RunContainerd runs upstream containerd's main with args (without the
// program name) until it receives SIGTERM or SIGINT. It installs its own
// signal handlers, so it runs in a child process of its own (`cluster
// containerd`), never inside the server process.
func RunContainerd(args []string) error {
	return command.App().Run(context.Background(), append([]string{"containerd"}, args...))
}

// RunCtr runs upstream ctr against address in namespace k8s.io unless the
// user's flags or CONTAINERD_ADDRESS/CONTAINERD_NAMESPACE say otherwise.
func RunCtr(address string, args []string) error {
	app := ctrapp.New()
	for _, f := range app.Flags {
		if sf, ok := f.(*cli.StringFlag); ok {
			switch sf.Name {
			case "address":
				sf.Value = address
			case "namespace":
				sf.Value = "k8s.io"
			}
		}
	}
	return app.Run(context.Background(), append([]string{"ctr"}, args...))
}
