package containerd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	client "github.com/containerd/containerd/v2/client"

	"github.com/cluster-io/cluster/component"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("containerd")

// Process runs containerd as a child of this binary (`<self> containerd -c
// <config>`): containerd installs its own signal handlers and must outlive
// nothing but us. The containers' shims are started in process groups of
// their own, so they and the pods survive a restart of `cluster`.
type Process struct {
	ConfigPath string
	Address    string
	// BinDir goes first on the child's PATH (runc, shim and CNI helpers).
	BinDir string
	// WorkDir is containerd's working directory: the first place it looks
	// for a shim binary.
	WorkDir string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the child has ended
	done   chan error
}

// Name implements component.Component.
func (p *Process) Name() string { return "containerd" }

// Start launches the child and returns at once; Ready waits for its socket.
func (p *Process) Start(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	cmd := exec.Command(self, "containerd", "-c", p.ConfigPath)
	cmd.Dir = p.WorkDir
	cmd.Env = childEnv(os.Environ(), p.BinDir)
	// If we die without stopping it (SIGKILL), containerd must not stay
	// behind holding its database lock; the shims are not its children in
	// this sense and keep running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	p.done = make(chan error, 1)
	go relayLogs(out)
	go func() {
		err := cmd.Wait()
		close(p.exited)
		if err == nil {
			err = errors.New("exited")
		}
		p.done <- fmt.Errorf("containerd: %w", err)
		close(p.done)
	}()
	return nil
}

// Ready waits until containerd answers on its socket.
func (p *Process) Ready(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := component.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if _, err := os.Stat(p.Address); err != nil {
			return err
		}
		c, err := client.New(p.Address, client.WithTimeout(time.Second))
		if err != nil {
			return err
		}
		defer c.Close()
		serving, err := c.IsServing(ctx)
		if err != nil {
			return err
		}
		if !serving {
			return errors.New("containerd not serving yet")
		}
		return nil
	})
	select {
	case <-p.exited:
		return errors.New("containerd exited during start (see its log lines above)")
	default:
		return err
	}
}

// Done reports the child's exit.
func (p *Process) Done() <-chan error { return p.done }

// Stop sends SIGTERM and waits; containers keep running.
func (p *Process) Stop() error {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("containerd did not stop within 10s; killed")
	}
}

func childEnv(env []string, binDir string) []string {
	out := make([]string, 0, len(env)+1)
	path := binDir
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "NOTIFY_SOCKET="):
			// systemd readiness is ours to report, not the child's.
		case strings.HasPrefix(kv, "PATH="):
			path = binDir + ":" + strings.TrimPrefix(kv, "PATH=")
		default:
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path)
}

// relayLogs prints containerd's lines under its own prefix.
func relayLogs(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		fmt.Fprintf(os.Stderr, "[containerd] %s\n", s.Text())
	}
}
