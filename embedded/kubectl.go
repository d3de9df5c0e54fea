package embedded

import (
	"os"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

// RunKubectl runs upstream kubectl with args (without the program name) and
// returns its exit code. If no kubeconfig is named and KUBECONFIG is unset,
// defaultKubeconfig is used when it exists, as k3s does.
func RunKubectl(args []string, defaultKubeconfig string) int {
	if os.Getenv("KUBECONFIG") == "" && !namesKubeconfig(args) && defaultKubeconfig != "" {
		if _, err := os.Stat(defaultKubeconfig); err == nil {
			os.Setenv("KUBECONFIG", defaultKubeconfig)
		}
	}
	// Upstream reads os.Args to find plugins and subcommands.
	os.Args = append([]string{"kubectl"}, args...)
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	return cli.Run(cmd)
}

func namesKubeconfig(args []string) bool {
	for _, a := range args {
		if a == "--kubeconfig" || len(a) > 13 && a[:13] == "--kubeconfig=" {
			return true
		}
	}
	return false
}
