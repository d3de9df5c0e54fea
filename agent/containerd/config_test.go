package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
)

func TestRender(t *testing.T) {
	c := Config{
		Root: "/d/containerd", State: "/d/run/containerd", Address: "/d/run/containerd.sock",
		ShimSocketDir: "/run/cluster/abc/s", RuncRoot: "/d/run/runc", RuncBinary: "/d/bin/runc",
		OptDir: "/d/opt", RegistryDir: "/d/certs.d", CNIBinDir: "/d/bin", CNIConfDir: "/d/net.d",
		SandboxImage: "localhost/cluster/pause:3.10", RestrictOOMScoreAdj: true,
		DropInDir: "/d/etc/containerd/config.d", ShimBinary: "/d/bin/containerd-shim-runc-v2",
	}
	b, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		"version = 4",
		`bin_dirs = ["/d/bin"]`, // containerd 2.4 ignores the old bin_dir
		`sandbox = "localhost/cluster/pause:3.10"`,
		"restrict_oom_score_adj = true",
		`BinaryName = "/d/bin/runc"`,
		// by path: containerd would look in its working directory first
		`runtime_path = "/d/bin/containerd-shim-runc-v2"`,
		"SystemdCgroup = false",
		`socket_dir = "/run/cluster/abc/s"`,
		`address = "/d/run/containerd.sock.ttrpc"`,
		`stats_collect_period = "30s"`,
		`imports = ["/d/etc/containerd/config.d/*.toml"]`,
		// in-process with embedded etcd: the same gRPC metrics, one registry
		`disabled_plugins = ["io.containerd.metrics.v1.grpc-prometheus"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	c.ShimSocketDir = "/" + strings.Repeat("x", 42)
	if _, err := c.Render(); err == nil {
		t.Error("a shim socket dir over 42 bytes was accepted")
	}
}

// A drop-in file changes one setting of a section and keeps the rest of
// it: this is the way back to containerd's own defaults (and to any other
// change), read by containerd's own config loader.
func TestDropInOverridesOneSetting(t *testing.T) {
	dir := t.TempDir()
	c := Config{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), Address: filepath.Join(dir, "c.sock"),
		ShimSocketDir: "/run/cluster/abc/s", RuncRoot: filepath.Join(dir, "runc"), RuncBinary: "/d/bin/runc",
		OptDir: filepath.Join(dir, "opt"), RegistryDir: filepath.Join(dir, "certs.d"), CNIBinDir: "/d/bin",
		CNIConfDir: filepath.Join(dir, "net.d"), SandboxImage: "localhost/cluster/pause:3.10",
		RestrictOOMScoreAdj: true, DropInDir: filepath.Join(dir, "etc", "config.d"),
	}
	path := filepath.Join(dir, "etc", "config.toml")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	runtime := func() map[string]any {
		t.Helper()
		var cfg srvconfig.Config
		if err := srvconfig.LoadConfig(context.Background(), path, &cfg); err != nil {
			t.Fatal(err)
		}
		section, ok := cfg.Plugins["io.containerd.cri.v1.runtime"].(map[string]any)
		if !ok {
			t.Fatalf("no CRI runtime section in %v", cfg.Plugins)
		}
		return section
	}
	if got := runtime()["stats_collect_period"]; got != StatsCollectPeriod {
		t.Errorf("without a drop-in: stats_collect_period = %v, want %s", got, StatsCollectPeriod)
	}
	dropIn := "version = 4\n[plugins.'io.containerd.cri.v1.runtime']\n  stats_collect_period = \"1s\"\n"
	if err := os.WriteFile(filepath.Join(c.DropInDir, "50-stats.toml"), []byte(dropIn), 0o600); err != nil {
		t.Fatal(err)
	}
	section := runtime()
	if got := section["stats_collect_period"]; got != "1s" {
		t.Errorf("with a drop-in: stats_collect_period = %v, want 1s", got)
	}
	if got := section["restrict_oom_score_adj"]; got != true {
		t.Errorf("the drop-in lost the rest of its section: restrict_oom_score_adj = %v", got)
	}
}

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:1":                "docker.io/library/busybox:1",
		"localhost/test/webapp:v1": "localhost/test/webapp:v1",
		"latest":                   "", // tag-only OCI ref name
		"Bad Name:1":               "",
	} {
		if got := fullName(in); got != want {
			t.Errorf("fullName(%q) = %q, want %q", in, got, want)
		}
	}
}
