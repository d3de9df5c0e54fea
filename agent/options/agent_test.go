package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func load(t *testing.T, args []string, env map[string]string) (*Agent, error) {
	t.Helper()
	o := &Agent{}
	cmd := &cobra.Command{}
	o.AddFlags(cmd.Flags())
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	return o, o.Load(cmd, func(k string) string { return env[k] })
}

const testToken = "K10" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + "::server:s3cret"

func TestServerAndTokenFromEnvironment(t *testing.T) {
	o, err := load(t, []string{"--config", "/dev/null"}, map[string]string{"CLUSTER_URL": "https://10.0.0.1:6443", "CLUSTER_TOKEN": testToken})
	if err != nil {
		t.Fatal(err)
	}
	if o.Server != "https://10.0.0.1:6443" || o.Token != testToken {
		t.Errorf("server %q testToken %q", o.Server, o.Token)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestServerAndTokenFromConfigFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("server: https://10.0.0.1:6443\ntoken: "+testToken+"\nnode-label: [a=b]\n"), 0o600)
	o, err := load(t, []string{"--config", cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Server != "https://10.0.0.1:6443" || o.Token != testToken || len(o.NodeLabels) != 1 {
		t.Errorf("got %+v", o)
	}
}

func TestValidateBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"--token", testToken}, "--server (or CLUSTER_URL) is required"},
		{"http server", []string{"--server", "http://10.0.0.1:6443", "--token", testToken}, "want https://HOST:PORT"},
		{"no testToken", []string{"--server", "https://h:6443"}, "--token (or CLUSTER_TOKEN, or --token-file) is required"},
		{"both tokens", []string{"--server", "https://h:6443", "--token", testToken, "--token-file", "f"}, "either --token or --token-file"},
		{"bad testToken", []string{"--server", "https://h:6443", "--token", "K10zz::server:x"}, "--token: "},
		{"lb port", []string{"--server", "https://h:6443", "--token", testToken, "--lb-server-port", "0"}, "--lb-server-port 0"},
		{"node label", []string{"--server", "https://h:6443", "--token", testToken, "--node-label", "x"}, "--node-label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := load(t, append(tt.args, "--config", "/dev/null"), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}
