// Package install tests install.sh and the scripts it writes. Each case runs
// in private mount and network namespaces with tmpfs over every directory the
// installer touches, so the host is never changed. Needs root (CI is root).
package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The directories install.sh writes; each becomes an empty tmpfs.
var scratch = []string{"/usr/local/bin", "/etc/systemd/system", "/etc/cluster", "/etc/init.d", "/etc/conf.d", "/var/lib/cluster", "/run/cluster"}

var installer, _ = filepath.Abs("../../install.sh")

// inNamespace runs script under sh in fresh namespaces and returns its output.
func inNamespace(t *testing.T, script string) (string, error) {
	t.Helper()
	var prelude strings.Builder
	prelude.WriteString("set -eu\nip link set lo up\n")
	// Hide host copies of the commands install.sh links, so that its
	// "exists already" check sees a clean machine: a non-executable file
	// bind-mounted over them is not found by command -v.
	prelude.WriteString("for c in kubectl crictl ctr; do p=$(command -v $c) || continue; mount --bind /dev/null $p 2>/dev/null || true; done\n")
	for _, d := range scratch {
		fmt.Fprintf(&prelude, "mkdir -p %s && mount -t tmpfs tmpfs %s\n", d, d)
	}
	// A PID namespace too: the kill-all script kills every process named
	// cluster, and must not reach the servers other tests run meanwhile.
	cmd := exec.Command("unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private", "sh", "-c", prelude.String()+script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeBinary writes a stand-in for the cluster binary; content distinguishes versions.
func fakeBinary(t *testing.T, dir, version string) string {
	t.Helper()
	p := filepath.Join(dir, "cluster-"+version)
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho cluster "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// listing prints every file below the scratch dirs with mode, type and link target.
const listing = `echo "--- listing"; find /usr/local/bin /etc/systemd/system /etc/cluster /etc/init.d /etc/conf.d /var/lib/cluster -mindepth 1 -printf '%p %m %y %l\n' | sort; echo "--- end"`

func section(out, name string) string {
	_, rest, ok := strings.Cut(out, "--- "+name+"\n")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "--- end")
	return body
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

func TestLocalInstallIdempotentAndUninstall(t *testing.T) {
	bin := fakeBinary(t, t.TempDir(), "v1")
	env := fmt.Sprintf("INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%s CLUSTER_TOKEN=s3cret INSTALL_CLUSTER_EXEC='--disable-agent --node-name edge1'", bin)
	script := fmt.Sprintf(`
env %[1]s sh %[2]s
%[3]s
echo "--- unit"; cat /etc/systemd/system/cluster.service; echo "--- end"
echo "--- env"; cat /etc/systemd/system/cluster.service.env; echo "--- end"
echo "--- second"; env %[1]s sh %[2]s; echo "--- end"
echo "--- listing2"; find /usr/local/bin /etc/systemd/system /etc/cluster /etc/init.d /etc/conf.d /var/lib/cluster -mindepth 1 -printf '%%p %%m %%y %%l\n' | sort; echo "--- end"
mkdir -p /var/lib/cluster/server /etc/cluster && touch /var/lib/cluster/server/state.db /etc/cluster/config.yaml
echo "--- uninstall"; /usr/local/bin/cluster-uninstall.sh 2>&1; echo "--- end"
echo "--- after"; find /usr/local/bin /etc/systemd/system /etc/cluster /etc/init.d /var/lib/cluster -mindepth 1 2>/dev/null || true; echo "--- end"
`, env, installer, listing)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	files := section(out, "listing")
	mustContain(t, "installed files", files,
		"/usr/local/bin/cluster 755 f",
		"/usr/local/bin/kubectl 777 l cluster",
		"/usr/local/bin/crictl 777 l cluster",
		"/usr/local/bin/ctr 777 l cluster",
		"/usr/local/bin/cluster-killall.sh 755 f",
		"/usr/local/bin/cluster-uninstall.sh 755 f",
		"/etc/systemd/system/cluster.service 644 f",
		"/etc/systemd/system/cluster.service.env 600 f")
	unit := section(out, "unit")
	mustContain(t, "unit", unit, "ExecStart=/usr/local/bin/cluster server --disable-agent --node-name edge1", "EnvironmentFile=-/etc/systemd/system/cluster.service.env")
	if strings.Contains(unit, "s3cret") {
		t.Error("the token is in the world-readable unit")
	}
	mustContain(t, "env file", section(out, "env"), "CLUSTER_TOKEN=s3cret")
	mustContain(t, "first run output", out, "systemd is not running", "start cluster by hand")
	mustContain(t, "second run", section(out, "second"), "already up to date")
	if files != section(out, "listing2") {
		t.Errorf("second run changed the installed files:\n%s\nvs\n%s", files, section(out, "listing2"))
	}
	// /etc/cluster is a tmpfs mount point here, so it may stay as an empty directory.
	if after := strings.TrimSpace(section(out, "after")); after != "" {
		t.Errorf("uninstall left files behind:\n%s", after)
	}
}

func TestAgentAndUpgrade(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := fakeBinary(t, dir, "v1"), fakeBinary(t, dir, "v2")
	script := fmt.Sprintf(`
INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%s CLUSTER_URL=https://10.99.0.1:6443 CLUSTER_TOKEN=t sh %s >/dev/null
INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%s CLUSTER_URL=https://10.99.0.1:6443 CLUSTER_TOKEN=t sh %s
echo "--- unit"; cat /etc/systemd/system/cluster.service; echo "--- end"
echo "--- version"; /usr/local/bin/cluster; echo "--- end"
`, v1, installer, v2, installer)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, "unit", section(out, "unit"), "ExecStart=/usr/local/bin/cluster agent")
	mustContain(t, "upgraded binary", section(out, "version"), "cluster v2")
	mustContain(t, "output", out, "installed /usr/local/bin/cluster")
}

func TestDownloadVerifiesChecksum(t *testing.T) {
	dir := t.TempDir()
	// The release has the binary twice: plain, and xz-compressed (here a
	// different stand-in, so the output tells which one was installed).
	plain, _ := os.ReadFile(fakeBinary(t, dir, "v1"))
	compressed := xzCompress(t, fakeBinary(t, dir, "v1-from-xz"))
	line := func(data []byte, name string) string {
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:]) + "  " + name + "\n"
	}
	rel := filepath.Join(dir, "www", "download", "v1.0.0")
	os.MkdirAll(rel, 0o755)
	os.WriteFile(filepath.Join(rel, "cluster-amd64"), plain, 0o755)
	os.WriteFile(filepath.Join(rel, "cluster-amd64.xz"), compressed, 0o644)
	os.WriteFile(filepath.Join(rel, "sha256sum-amd64.txt"), []byte(line(plain, "cluster-amd64")+line(compressed, "cluster-amd64.xz")), 0o644)
	bad := filepath.Join(dir, "www", "download", "v6.6.6")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "cluster-amd64"), []byte("tampered"), 0o755)
	os.WriteFile(filepath.Join(bad, "cluster-amd64.xz"), xzCompressBytes(t, []byte("tampered")), 0o644)
	os.WriteFile(filepath.Join(bad, "sha256sum-amd64.txt"), []byte(line(plain, "cluster-amd64")+line(compressed, "cluster-amd64.xz")), 0o644)

	script := fmt.Sprintf(`
/usr/bin/python3 -m http.server -b 127.0.0.1 18080 -d %s/www >/dev/null 2>&1 &
server=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.1; done
echo "--- bad"; INSTALL_CLUSTER_DOWNLOAD_URL=http://127.0.0.1:18080 INSTALL_CLUSTER_VERSION=v6.6.6 sh %[2]s 2>&1 && echo INSTALLED || echo "exit $?"; ls /usr/local/bin; echo "--- end"
echo "--- good"; INSTALL_CLUSTER_DOWNLOAD_URL=http://127.0.0.1:18080 INSTALL_CLUSTER_VERSION=v1.0.0 INSTALL_CLUSTER_SKIP_START=true sh %[2]s 2>&1; /usr/local/bin/cluster; echo "--- end"
for c in xz unxz; do p=$(command -v $c) && mount --bind /dev/null $p; done
echo "--- bad without xz"; INSTALL_CLUSTER_DOWNLOAD_URL=http://127.0.0.1:18080 INSTALL_CLUSTER_VERSION=v6.6.6 sh %[2]s 2>&1 && echo INSTALLED || echo "exit $?"; echo "--- end"
echo "--- good without xz"; INSTALL_CLUSTER_DOWNLOAD_URL=http://127.0.0.1:18080 INSTALL_CLUSTER_VERSION=v1.0.0 INSTALL_CLUSTER_SKIP_START=true sh %[2]s 2>&1; /usr/local/bin/cluster; echo "--- end"
kill $server || true
`, dir, installer)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, name := range []string{"bad", "bad without xz"} {
		badOut := section(out, name)
		mustContain(t, "tampered download", badOut, "checksum mismatch", "exit 1")
		if strings.Contains(badOut, "INSTALLED") || strings.Contains(badOut, "cluster-killall.sh") {
			t.Errorf("a tampered binary was installed (%s):\n%s", name, badOut)
		}
	}
	mustContain(t, "good download", section(out, "good"), "downloading cluster-amd64.xz", "installed /usr/local/bin/cluster", "cluster v1-from-xz", "not starting cluster")
	mustContain(t, "good download without xz", section(out, "good without xz"), "downloading cluster-amd64 from", "cluster v1\n")
}

func xzCompress(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return xzCompressBytes(t, data)
}

func xzCompressBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	cmd := exec.Command("xz", "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	return out
}

func TestRefusals(t *testing.T) {
	bin := fakeBinary(t, t.TempDir(), "v1")
	os.Chmod(filepath.Dir(bin), 0o755)
	tools := t.TempDir()
	for _, tool := range []string{"sh", "id", "uname", "mktemp", "rm", "awk", "cut", "sha256sum"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(tools, tool))
	}
	script := fmt.Sprintf(`
echo "--- nonroot"; setpriv --reuid=65534 --regid=65534 --clear-groups sh %[1]s 2>&1 || echo "exit $?"; echo "--- end"
echo "--- nodownload"; PATH=%[2]s sh %[1]s 2>&1 || echo "exit $?"; echo "--- end"
echo "--- nobinpath"; INSTALL_CLUSTER_SKIP_DOWNLOAD=true sh %[1]s 2>&1 || echo "exit $?"; echo "--- end"
echo "--- existingkubectl"; mkdir -p /tmp/fakebin && printf '#!/bin/sh\n' >/tmp/fakebin/kubectl && chmod +x /tmp/fakebin/kubectl
PATH=/tmp/fakebin:$PATH INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%[3]s sh %[1]s 2>&1; ls -l /usr/local/bin; echo "--- end"
`, installer, tools, bin)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, "non-root", section(out, "nonroot"), "run as root", "exit 1")
	mustContain(t, "no download tool", section(out, "nodownload"), "neither curl nor wget", "exit 1")
	mustContain(t, "skip download without path", section(out, "nobinpath"), "needs INSTALL_CLUSTER_BIN_PATH", "exit 1")
	existing := section(out, "existingkubectl")
	mustContain(t, "existing kubectl", existing, "skipping kubectl link", "crictl -> cluster")
	if strings.Contains(existing, "kubectl -> cluster") {
		t.Errorf("kubectl link made although kubectl exists:\n%s", existing)
	}
}

func TestOpenRC(t *testing.T) {
	bin := fakeBinary(t, t.TempDir(), "v1")
	script := fmt.Sprintf(`
mkdir -p /tmp/openrc
for c in openrc-run rc-update rc-service; do printf '#!/bin/sh\necho "%%s $*" >>/tmp/openrc/calls\n' "$c" >/tmp/openrc/$c; chmod +x /tmp/openrc/$c; done
PATH=/tmp/openrc:$PATH INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%s CLUSTER_TOKEN=s3cret sh %s
%s
echo "--- service"; cat /etc/init.d/cluster; echo "--- end"
echo "--- calls"; cat /tmp/openrc/calls; echo "--- end"
`, bin, installer, listing)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, "openrc files", section(out, "listing"), "/etc/init.d/cluster 755 f", "/etc/conf.d/cluster.env 600 f")
	if strings.Contains(section(out, "listing"), "cluster.service") {
		t.Error("systemd unit written on an openrc host")
	}
	svc := section(out, "service")
	mustContain(t, "openrc service", svc, "#!/sbin/openrc-run", `command="/usr/local/bin/cluster"`, "command_args=\"server")
	if strings.Contains(svc, "s3cret") {
		t.Error("token in the world-readable service file")
	}
	mustContain(t, "openrc calls", section(out, "calls"), "rc-update add cluster default", "rc-service cluster restart")
}

func TestKillallRemovesInterfaces(t *testing.T) {
	bin := fakeBinary(t, t.TempDir(), "v1")
	script := fmt.Sprintf(`
INSTALL_CLUSTER_SKIP_DOWNLOAD=true INSTALL_CLUSTER_BIN_PATH=%s INSTALL_CLUSTER_SKIP_START=true sh %s >/dev/null
ip link add cni0 type bridge
ip link add flannel.1 type vxlan id 1 dstport 8472 nolearning
ip link add veth-a type veth peer name veth-b
mkdir -p /var/lib/cluster/agent/kubelet/pods/x && mount -t tmpfs tmpfs /var/lib/cluster/agent/kubelet/pods/x
/usr/local/bin/cluster-killall.sh >/dev/null 2>&1
echo "--- links"; ip -o link show | awk -F': ' '{print $2}'; echo "--- end"
echo "--- mounts"; grep /var/lib/cluster/agent /proc/self/mounts || true; echo "--- end"
`, bin, installer)
	out, err := inNamespace(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	links := section(out, "links")
	for _, l := range []string{"cni0", "flannel.1", "veth-a", "veth-b"} {
		if strings.Contains(links, l) {
			t.Errorf("killall left interface %s:\n%s", l, links)
		}
	}
	if m := strings.TrimSpace(section(out, "mounts")); m != "" {
		t.Errorf("killall left mounts: %s", m)
	}
}

func TestShellcheck(t *testing.T) {
	out, err := exec.Command("shellcheck", "-s", "sh", installer).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck install.sh: %v\n%s", err, out)
	}
	// The other shell scripts we ship or run: the node's kill-all (POSIX sh),
	// the build, test and benchmark scripts and CI's entry point (bash).
	scripts, _ := filepath.Glob("../../scripts/*")
	scripts = append(scripts, "../../.ci/run", "../../agent/bundle/bins/cluster-killall.sh")
	out, err = exec.Command("shellcheck", scripts...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck %v: %v\n%s", scripts, err, out)
	}
}
