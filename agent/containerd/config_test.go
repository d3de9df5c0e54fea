package containerd

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	c := Config{
		Root: "/d/containerd", State: "/d/run/containerd", Address: "/d/run/containerd.sock",
		ShimSocketDir: "/run/cluster/abc/s", RuncRoot: "/d/run/runc", RuncBinary: "/d/bin/runc",
		OptDir: "/d/opt", RegistryDir: "/d/certs.d", CNIBinDir: "/d/bin", CNIConfDir: "/d/net.d",
		SandboxImage: "localhost/cluster/pause:3.10", RestrictOOMScoreAdj: true,
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
		"SystemdCgroup = false",
		`socket_dir = "/run/cluster/abc/s"`,
		`address = "/d/run/containerd.sock.ttrpc"`,
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
