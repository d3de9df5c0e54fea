package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cluster-io/cluster/test/harness"
)

// Two servers on one PostgreSQL database are one cluster: the second,
// started with the first's token, restores the CAs from the datastore's
// encrypted cluster data; both serve the same objects; one
// controller-manager and scheduler lead and the other server takes over
// when the leader stops. A server without the token, or with another, is
// refused before it writes anything.
func TestTwoServersOnePostgres(t *testing.T) {
	pgPort := startPostgres(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pgPort)
	a := newServer(t)
	a.hostname = "server-a"
	a.start("--datastore-endpoint", dsn)
	tok := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(a.dataDir, "server", "token")))))

	ports := func() []string {
		return []string{"--kube-controller-manager-arg", "secure-port=" + strconv.Itoa(harness.FreePort(t)),
			"--kube-scheduler-arg", "secure-port=" + strconv.Itoa(harness.FreePort(t))}
	}
	for _, tc := range []struct{ name, token, want string }{
		{"no token", "", "the datastore already holds a cluster"},
		{"another token", "K10" + strings.Repeat("ab", 32) + "::server:not-the-secret", "is not the server token of the cluster in this datastore"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			x := newServer(t)
			args := append(x.args("--datastore-endpoint", dsn), ports()...)
			if tc.token != "" {
				args = append(args, "--token", tc.token)
			}
			cmd := exec.Command(clusterBin, args...)
			cmd.Env = harness.CleanEnv()
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, want an error containing %q:\n%s", err, tc.want, harness.Tail(string(out), 20))
			}
			if _, err := os.Stat(filepath.Join(x.dataDir, "server", "tls", "server-ca.crt")); err == nil {
				t.Error("a refused server wrote a CA")
			}
		})
	}

	b := newServer(t)
	b.hostname = "server-b"
	begin := time.Now()
	bArgs := append([]string{"--datastore-endpoint", dsn, "--token", tok}, ports()...)
	// Once, this start sometimes hung for a minute and failed: kine's watch
	// progress fell behind the other server's writes (fixed by running the
	// apiserver without WatchList on shared databases). The first server
	// writes all through the second's start, to make that likely.
	writing := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ka, err := a.client()
		if err != nil {
			t.Error(err)
			return
		}
		for i := 0; ; i++ {
			select {
			case <-writing:
				return
			case <-time.After(50 * time.Millisecond):
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("during-start-%d", i)}}
			_, _ = ka.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{})
		}
	}()
	b.start(bArgs...)
	close(writing)
	<-writerDone
	t.Logf("second server: start → /readyz %s", time.Since(begin).Round(100*time.Millisecond))
	t.Run("the second server has the first's CAs and keys", func(t *testing.T) {
		for _, f := range []string{"server-ca.crt", "server-ca.key", "client-ca.key", "request-header-ca.key", "service.key"} {
			if !bytes.Equal(must(os.ReadFile(filepath.Join(a.dataDir, "server", "tls", f))), must(os.ReadFile(filepath.Join(b.dataDir, "server", "tls", f)))) {
				t.Errorf("%s differs between the servers", f)
			}
		}
	})
	ca, cb := must(a.client()), must(b.client())
	ctx := context.Background()
	t.Run("both serve the same objects", func(t *testing.T) {
		if _, err := ca.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "from-a"}, Data: map[string]string{"k": "a"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 10*time.Second, "from-a through b", func() error {
			cm, err := cb.CoreV1().ConfigMaps("default").Get(ctx, "from-a", metav1.GetOptions{})
			if err == nil && cm.Data["k"] != "a" {
				return fmt.Errorf("data %v", cm.Data)
			}
			return err
		})
		// A service-account token made by one server is accepted by the other.
		tr, err := ca.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		review := must(cb.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{}))
		if !review.Status.Authenticated {
			t.Errorf("server b does not accept a token server a issued: %s", review.Status.Error)
		}
	})
	holder := func(lease string) string {
		l, err := cb.CoordinationV1().Leases("kube-system").Get(ctx, lease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	t.Run("one controller-manager and one scheduler lead", func(t *testing.T) {
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			if h := holder(lease); !strings.HasPrefix(h, "server-a_") || !strings.Contains(h, ":"+strconv.Itoa(a.port)) {
				t.Errorf("lease %s held by %q, want the first server (port %d)", lease, h, a.port)
			}
		}
		if !strings.Contains(b.log.String(), "kube-controller-manager: ") || !strings.Contains(b.log.String(), "stands by") {
			t.Errorf("the second server does not say it stands by:\n%s", harness.Tail(b.log.String(), 30))
		}
	})
	t.Run("the other server takes over when the leader stops", func(t *testing.T) {
		a.stop(syscall.SIGTERM)
		harness.WaitFor(t, 45*time.Second, "leases move to the second server", func() error {
			for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
				if h := holder(lease); !strings.HasPrefix(h, "server-b_") || !strings.Contains(h, ":"+strconv.Itoa(b.port)) {
					return fmt.Errorf("lease %s held by %q", lease, h)
				}
			}
			return nil
		})
		// The new leader's controllers act: a Deployment gets its ReplicaSet.
		d := harness.WebDeployment("after-failover", "localhost/none:v1", 1)
		if _, err := cb.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, time.Minute, "a ReplicaSet made by b's controller-manager", func() error {
			rs, err := cb.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=after-failover"})
			if err != nil || len(rs.Items) == 0 {
				return fmt.Errorf("no ReplicaSet yet (%v)", err)
			}
			return nil
		})
	})
	b.stop(syscall.SIGTERM)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
