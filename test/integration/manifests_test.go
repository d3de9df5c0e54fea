package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cluster-io/cluster/test/harness"
)

// The manifests folder: packaged components land there and are deployed; a
// user's file is applied, re-applied when it changes (pruning what it no
// longer holds) and its objects removed with it; --disable removes a
// packaged component on the next start. HelmCharts (helm_test.go) are
// checked on the same server.
func TestManifestsFolder(t *testing.T) {
	s := newServer(t)
	s.start()
	c, err := s.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := filepath.Join(s.dataDir, "server", "manifests")
	if _, err := os.Stat(filepath.Join(dir, "coredns.yaml")); err != nil {
		t.Fatalf("packaged coredns.yaml not in the manifests folder: %v", err)
	}
	svc, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP != "10.43.0.10" {
		t.Fatalf("kube-dns service: %v %+v", err, svc.Spec.ClusterIP)
	}

	mine := filepath.Join(dir, "mine.yaml")
	write := func(data string) {
		if err := os.WriteFile(mine, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`apiVersion: v1
kind: ConfigMap
metadata: {name: mine, namespace: default}
data: {v: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: mine}
stringData: {v: "1"}
`)
	harness.WaitFor(t, time.Minute, "a dropped-in manifest applied", func() error {
		cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, "mine", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, err := c.CoreV1().Secrets("kube-system").Get(ctx, "mine", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("secret (default namespace kube-system): %w", err)
		}
		if cm.Data["v"] != "1" {
			return fmt.Errorf("data %v", cm.Data)
		}
		return nil
	})
	write(`apiVersion: v1
kind: ConfigMap
metadata: {name: mine, namespace: default}
data: {v: "2"}
`)
	harness.WaitFor(t, time.Minute, "a changed manifest re-applied and pruned", func() error {
		cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, "mine", metav1.GetOptions{})
		if err != nil || cm.Data["v"] != "2" {
			return fmt.Errorf("configmap %v %v", err, cm)
		}
		if _, err := c.CoreV1().Secrets("kube-system").Get(ctx, "mine", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("secret the file no longer holds: %v", err)
		}
		return nil
	})
	if err := os.Remove(mine); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, time.Minute, "a removed manifest's objects removed", func() error {
		if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, "mine", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("configmap: %v", err)
		}
		return nil
	})

	testHelmCharts(t, s, c)
	if _, err := c.StorageV1().StorageClasses().Get(ctx, "local-path", metav1.GetOptions{}); err != nil {
		t.Errorf("StorageClass local-path: %v", err)
	}

	s.stop(syscall.SIGTERM)
	s.start("--disable", "coredns", "--disable", "local-storage")
	if c, err = s.client(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "coredns.yaml")); err == nil {
		t.Error("--disable coredns left coredns.yaml in the manifests folder")
	}
	harness.WaitFor(t, time.Minute, "--disable coredns removes CoreDNS", func() error {
		if _, err := c.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment: %v", err)
		}
		if _, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("service: %v", err)
		}
		if _, err := c.StorageV1().StorageClasses().Get(ctx, "local-path", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("--disable local-storage: StorageClass local-path: %v", err)
		}
		return nil
	})
	s.stop(syscall.SIGTERM)
}
