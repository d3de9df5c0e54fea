package cliopts

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

type opts struct {
	dataDir string
	port    int
	sans    []string
	args    []string
	flag    bool
}

func newFlags(o *opts) *pflag.FlagSet {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "/default", "")
	fs.IntVar(&o.port, "https-listen-port", 6443, "")
	fs.StringSliceVar(&o.sans, "tls-san", nil, "")
	fs.StringArrayVar(&o.args, "kube-apiserver-arg", nil, "")
	fs.BoolVar(&o.flag, "disable-agent", false, "")
	return fs
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := `data-dir: /from-file
https-listen-port: 7443
tls-san: [a.example, 10.0.0.1]
kube-apiserver-arg:
  - "enable-admission-plugins=A,B"
disable-agent: true
`
	tests := []struct {
		name     string
		argv     []string
		env      map[string]string
		file     string
		wantDir  string
		wantPort int
		wantSANs []string
		wantArgs []string
		wantFlag bool
	}{
		{name: "defaults", wantDir: "/default", wantPort: 6443},
		{name: "file over default", file: file, wantDir: "/from-file", wantPort: 7443,
			wantSANs: []string{"a.example", "10.0.0.1"}, wantArgs: []string{"enable-admission-plugins=A,B"}, wantFlag: true},
		{name: "env over file", file: file, env: map[string]string{"CLUSTER_DATA_DIR": "/from-env", "CLUSTER_TLS_SAN": "x,y"},
			wantDir: "/from-env", wantPort: 7443, wantSANs: []string{"x", "y"}, wantArgs: []string{"enable-admission-plugins=A,B"}, wantFlag: true},
		{name: "flag over env and file", file: file, env: map[string]string{"CLUSTER_DATA_DIR": "/from-env", "CLUSTER_HTTPS_LISTEN_PORT": "8443"},
			argv: []string{"--data-dir=/from-flag", "--tls-san=f"}, wantDir: "/from-flag", wantPort: 8443,
			wantSANs: []string{"f"}, wantArgs: []string{"enable-admission-plugins=A,B"}, wantFlag: true},
		{name: "env array value keeps commas", env: map[string]string{"CLUSTER_KUBE_APISERVER_ARG": "feature-gates=A=true,B=false"},
			wantDir: "/default", wantPort: 6443, wantArgs: []string{"feature-gates=A=true,B=false"}},
		{name: "explicit false flag beats file", file: file, argv: []string{"--disable-agent=false"},
			wantDir: "/from-file", wantPort: 7443, wantSANs: []string{"a.example", "10.0.0.1"}, wantArgs: []string{"enable-admission-plugins=A,B"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o opts
			fs := newFlags(&o)
			if err := fs.Parse(tt.argv); err != nil {
				t.Fatal(err)
			}
			src := Source{Getenv: func(k string) string { return tt.env[k] }}
			if tt.file != "" {
				src.ConfigFile = writeFile(t, tt.file)
			}
			if err := Apply(fs, src); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if o.dataDir != tt.wantDir || o.port != tt.wantPort || o.flag != tt.wantFlag {
				t.Errorf("got data-dir=%q port=%d flag=%v, want %q %d %v", o.dataDir, o.port, o.flag, tt.wantDir, tt.wantPort, tt.wantFlag)
			}
			if !slices.Equal(o.sans, tt.wantSANs) {
				t.Errorf("tls-san = %q, want %q", o.sans, tt.wantSANs)
			}
			if !slices.Equal(o.args, tt.wantArgs) {
				t.Errorf("kube-apiserver-arg = %q, want %q", o.args, tt.wantArgs)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		env      map[string]string
		required bool
		missing  bool
		wantErr  string
	}{
		{name: "unknown key", file: "data-dir: /x\nno-such-flag: 1\n", wantErr: `unknown key "no-such-flag"`},
		{name: "malformed yaml", file: "data-dir: [unclosed\n", wantErr: "is not valid YAML"},
		{name: "list for scalar", file: "data-dir: [a, b]\n", wantErr: `key "data-dir": takes a single value`},
		{name: "bad int in file", file: "https-listen-port: many\n", wantErr: `key "https-listen-port"`},
		{name: "bad int in env", env: map[string]string{"CLUSTER_HTTPS_LISTEN_PORT": "x"}, wantErr: "environment variable CLUSTER_HTTPS_LISTEN_PORT"},
		{name: "missing required file", required: true, missing: true, wantErr: "read config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o opts
			fs := newFlags(&o)
			src := Source{ConfigRequired: tt.required, Getenv: func(k string) string { return tt.env[k] }}
			if tt.missing {
				src.ConfigFile = filepath.Join(t.TempDir(), "absent.yaml")
			} else if tt.file != "" {
				src.ConfigFile = writeFile(t, tt.file)
			}
			err := Apply(fs, src)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

func TestMissingDefaultFileIsFine(t *testing.T) {
	var o opts
	fs := newFlags(&o)
	if err := Apply(fs, Source{ConfigFile: filepath.Join(t.TempDir(), "absent.yaml")}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("write-kubeconfig-mode"); got != "CLUSTER_WRITE_KUBECONFIG_MODE" {
		t.Errorf("EnvName = %q", got)
	}
}
