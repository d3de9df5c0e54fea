// Package integration runs the real cluster binary: it starts `cluster server`
// on a random port with a temporary data dir and talks to it with client-go.
//
// The binary comes from $CLUSTER_BIN (scripts/test builds it once); without
// it, TestMain builds one into a temporary directory.
package integration

import (
	"context"
	"fmt"
	"github.com/cluster-io/cluster/test/harness"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var clusterBin string

func TestMain(m *testing.M) {
	clusterBin = os.Getenv("CLUSTER_BIN")
	if clusterBin == "" {
		dir, err := os.MkdirTemp("", "cluster-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		clusterBin = filepath.Join(dir, "cluster")
		build := exec.Command("go", "build", "-tags", "bundled", "-o", clusterBin, "../..") // as scripts/build, after it made the bundle
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build cluster:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	abs, err := filepath.Abs(clusterBin)
	if err == nil {
		clusterBin = abs
	}
	os.Exit(m.Run())
}

type server struct {
	t          *testing.T
	dataDir    string
	kubeconfig string
	port       int
	cmd        *exec.Cmd
	log        *harness.SyncBuffer
	waitCh     chan error // yields the exit once
	ended      bool
	// hostname, if set, runs the server in a UTS namespace of its own with
	// that hostname (servers sharing a datastore need distinct hostnames,
	// as distinct machines have: the apiserver's identity lease is named
	// after it).
	hostname string
	env      []string // added to the clean environment
}

func newServer(t *testing.T) *server {
	dir := t.TempDir()
	// An explicit, empty config file keeps /etc/cluster/config.yaml out of tests.
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return &server{
		t:          t,
		dataDir:    filepath.Join(dir, "data"),
		kubeconfig: filepath.Join(dir, "kubeconfig.yaml"),
		port:       harness.FreePort(t),
	}
}

func (s *server) args(extra ...string) []string {
	return append([]string{"server", "--disable-agent",
		"--data-dir", s.dataDir,
		"--https-listen-port", strconv.Itoa(s.port),
		"--write-kubeconfig", s.kubeconfig,
		"--config", filepath.Join(filepath.Dir(s.dataDir), "config.yaml"),
		// metrics-server listens on a fixed port of the host's address;
		// test/node's server on this host has it (test/multinode checks
		// metrics-server on hosts of its own).
		"--disable", "metrics-server",
	}, extra...)
}

// start launches the server and waits until the kubeconfig works and /readyz is ok.
func (s *server) start(extra ...string) {
	s.t.Helper()
	if err := s.tryStart(extra...); err != nil {
		s.t.Fatal(err)
	}
}

// tryStart is start, returning an exit during the start as an error.
func (s *server) tryStart(extra ...string) error {
	s.t.Helper()
	s.log = &harness.SyncBuffer{}
	s.cmd = exec.Command(clusterBin, s.args(extra...)...)
	if s.hostname != "" {
		s.cmd = exec.Command("unshare", append([]string{"--uts", "sh", "-c", `hostname "$0" && exec "$@"`, s.hostname, clusterBin}, s.args(extra...)...)...)
	}
	s.cmd.Env = append(harness.CleanEnv(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.ended = false
	s.waitCh = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(s.cmd, s.waitCh)
	cmd, ch := s.cmd, s.waitCh
	s.t.Cleanup(func() {
		if cmd == s.cmd && !s.ended {
			cmd.Process.Kill()
			<-ch
		}
	})
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case err := <-s.waitCh:
			s.ended = true
			return fmt.Errorf("server exited during start: %v\n%s", err, harness.Tail(s.log.String(), 60))
		case <-deadline:
			s.t.Fatalf("server not ready after 3m\n%s", harness.Tail(s.log.String(), 60))
		case <-time.After(250 * time.Millisecond):
		}
		// The kubeconfig of a previous run may exist already: wait for this run's word.
		if !strings.Contains(s.log.String(), "control plane ready") {
			continue
		}
		if c, err := s.client(); err == nil {
			body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
			if err == nil && string(body) == "ok" {
				return nil
			}
		}
	}
}

func (s *server) client() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// stop sends sig and waits for the process to end.
func (s *server) stop(sig syscall.Signal) time.Duration {
	s.t.Helper()
	begin := time.Now()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.waitCh:
		s.ended = true
		if sig == syscall.SIGTERM && err != nil {
			s.t.Errorf("server exited with %v after SIGTERM\n%s", err, harness.Tail(s.log.String(), 60))
		}
	case <-time.After(90 * time.Second):
		s.t.Fatalf("server did not exit within 90s of %v\n%s", sig, harness.Tail(s.log.String(), 60))
	}
	return time.Since(begin)
}
