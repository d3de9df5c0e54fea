package loadbalancer

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// echoServer answers each connection's first line with "<name> <line>".
func echoServer(t *testing.T, name string) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(name + " " + line))
			}()
		}
	}()
	return l.Addr().String(), func() { l.Close() }
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func ask(t *testing.T, lb *LoadBalancer) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(lb.URL(), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi\n"))
	reply, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(reply)
}

func TestFailover(t *testing.T) {
	a, stopA := echoServer(t, "a")
	b, stopB := echoServer(t, "b")
	defer stopB()
	lb, err := New(freePort(t), []string{"https://" + a, "https://" + b})
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer lb.Stop()
	if got := ask(t, lb); got != "a hi" {
		t.Fatalf("first server: %q", got)
	}
	stopA()
	if got := ask(t, lb); got != "b hi" {
		t.Fatalf("after the first server went away: %q, want b", got)
	}
	if got := lb.Servers(); got[0] != b {
		t.Errorf("servers %v: the answering one should be in use", got)
	}
}

func TestSetServersKeepsTheGivenOne(t *testing.T) {
	lb, err := New(freePort(t), []string{"https://10.0.0.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	lb.SetServers([]string{"10.0.0.2:6443", "10.0.0.3:6443"})
	if got := lb.Servers(); !slices.Equal(got, []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"}) {
		t.Errorf("servers %v", got)
	}
	lb.SetServers(nil)
	if got := lb.Servers(); !slices.Equal(got, []string{"10.0.0.1:6443"}) {
		t.Errorf("servers %v: the given server must stay", got)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lb, _ := New(l.Addr().(*net.TCPAddr).Port, []string{"https://10.0.0.1:6443"})
	if err := lb.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "--lb-server-port") {
		t.Errorf("err = %v, want one naming --lb-server-port", err)
	}
}

func TestStateFileRemembersTheServers(t *testing.T) {
	lb, err := New(freePort(t), []string{"https://10.0.0.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	lb.StateFile = filepath.Join(t.TempDir(), "servers")
	if got := ReadServers(lb.StateFile); got != nil {
		t.Fatalf("nothing written yet, read %v", got)
	}
	lb.SetServers([]string{"10.0.0.2:6443", "10.0.0.3:6443"})
	want := []string{"https://10.0.0.1:6443", "https://10.0.0.2:6443", "https://10.0.0.3:6443"}
	if got := ReadServers(lb.StateFile); !slices.Equal(got, want) {
		t.Errorf("remembered %v, want %v", got, want)
	}
}
