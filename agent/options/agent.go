package options

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cluster-io/cluster/internal/cliopts"
	"github.com/cluster-io/cluster/internal/token"
)

// Defaults shared with the server, documentation and tests.
const (
	DefaultDataDir    = "/var/lib/cluster"
	DefaultConfigFile = "/etc/cluster/config.yaml"
	// DefaultLBServerPort is where the agent's client-side load balancer
	// listens on loopback (k3s's --lb-server-port).
	DefaultLBServerPort = 6444
)

// Agent holds every `cluster agent` option.
type Agent struct {
	ConfigFile   string
	DataDir      string
	Server       string
	Token        string
	TokenFile    string
	LBServerPort int
	Debug        bool
	Node
}

// AddFlags registers the options on fs with their defaults.
func (o *Agent) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.ConfigFile, "config", "c", DefaultConfigFile, "YAML file whose keys are these flags' names (env CLUSTER_CONFIG_FILE)")
	fs.StringVarP(&o.DataDir, "data-dir", "d", DefaultDataDir, "Folder to hold state")
	fs.StringVarP(&o.Server, "server", "s", "", "Server to join, https://HOST:6443 (env CLUSTER_URL)")
	fs.StringVarP(&o.Token, "token", "t", "", "Token to join with: the server's <data-dir>/server/token, its --agent-token, or one from 'cluster token create' (env CLUSTER_TOKEN)")
	fs.StringVar(&o.TokenFile, "token-file", "", "File holding the token")
	fs.IntVar(&o.LBServerPort, "lb-server-port", DefaultLBServerPort, "Loopback port of the agent's load balancer to the servers (kubelet, kube-proxy and flannel use it)")
	o.Node.AddFlags(fs)
	fs.BoolVar(&o.Debug, "debug", false, "Debug logging")
}

// Load fills the options not given on the command line from CLUSTER_*
// variables (CLUSTER_URL for --server, as k3s's K3S_URL) and the config file.
func (o *Agent) Load(cmd *cobra.Command, getenv func(string) string) error {
	return cliopts.Load(cmd.Flags(), &o.ConfigFile, getenv, map[string]string{"server": "CLUSTER_URL"})
}

// Validate checks the options and returns the first problem as an error a
// user can act on. It changes nothing on disk.
func (o *Agent) Validate() error {
	if o.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if o.Server == "" {
		return errors.New("--server (or CLUSTER_URL) is required: the URL of a server, e.g. https://10.0.0.1:6443")
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--server %q: want https://HOST:PORT, e.g. https://10.0.0.1:6443", o.Server)
	}
	switch {
	case o.Token != "" && o.TokenFile != "":
		return errors.New("give either --token or --token-file, not both")
	case o.Token == "" && o.TokenFile == "":
		return errors.New("--token (or CLUSTER_TOKEN, or --token-file) is required: the server's <data-dir>/server/token, its agent token, or a token from 'cluster token create'")
	case o.Token != "":
		if _, err := token.Parse(o.Token); err != nil {
			return fmt.Errorf("--token: %w", err)
		}
	}
	if o.LBServerPort < 1 || o.LBServerPort > 65535 {
		return fmt.Errorf("--lb-server-port %d is out of range 1-65535", o.LBServerPort)
	}
	return o.Node.Validate()
}

// JoinToken returns the token from --token or --token-file.
func (o *Agent) JoinToken() (token.Token, error) {
	s := o.Token
	if o.TokenFile != "" {
		var err error
		if s, err = token.ReadFile(o.TokenFile); err != nil {
			return token.Token{}, err
		}
	}
	t, err := token.Parse(s)
	if err != nil {
		return token.Token{}, fmt.Errorf("token: %w", err)
	}
	return t, nil
}
