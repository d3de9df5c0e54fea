package preflight

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

// NewCommand returns `cluster check-config`. proxyMode reads the
// kube-proxy mode from --kube-proxy-arg values.
func NewCommand(defaultDataDir string, proxyMode func(args []string) string) *cobra.Command {
	var (
		dataDir       string
		role          string
		httpsPort     int
		lbPort        int
		kubeProxyArgs []string
	)
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Check this host for what a server or agent needs; one line per check, with the fix for each problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ports []Port
			switch role {
			case "server":
				ports = append(ports,
					Port{Address: "0.0.0.0:" + strconv.Itoa(httpsPort), User: "kube-apiserver", Flag: "--https-listen-port"},
					Port{Address: "127.0.0.1:10257", User: "kube-controller-manager", Flag: "--kube-controller-manager-arg=secure-port=…"},
					Port{Address: "127.0.0.1:10259", User: "kube-scheduler", Flag: "--kube-scheduler-arg=secure-port=…"},
					Port{Address: "0.0.0.0:10251", User: "metrics-server", Flag: "--disable metrics-server"})
			case "agent":
				ports = append(ports, Port{Address: "127.0.0.1:" + strconv.Itoa(lbPort), User: "the agent's load balancer", Flag: "--lb-server-port"})
			default:
				return fmt.Errorf("--role %q: want server or agent", role)
			}
			rs := Run(Options{DataDir: dataDir, Node: true, NFTables: proxyMode(kubeProxyArgs) == "nftables", Ports: append(ports, NodePorts...)})
			errs, warnings := 0, 0
			for _, r := range rs {
				fmt.Fprintln(cmd.OutOrStdout(), r)
				switch r.Status {
				case Error:
					errs++
				case Warning:
					warnings++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d checks: %d errors, %d warnings\n", len(rs), errs, warnings)
			if errs > 0 {
				return fmt.Errorf("%d of %d checks failed (see the error lines above)", errs, len(rs))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&dataDir, "data-dir", "d", defaultDataDir, "Folder the node would hold its state in")
	fs.StringVar(&role, "role", "server", "What this host would run: server (control plane and node) or agent")
	fs.IntVar(&httpsPort, "https-listen-port", 6443, "The server's apiserver port")
	fs.IntVar(&lbPort, "lb-server-port", 6444, "The agent's load balancer port")
	fs.StringArrayVar(&kubeProxyArgs, "kube-proxy-arg", nil, "kube-proxy flags as for the node (proxy-mode=nftables checks for nft)")
	return cmd
}
