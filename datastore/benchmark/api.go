package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// apiCells runs the workload through a running apiserver (ConfigMaps of the
// same size as the direct values) and returns op → clients → result.
func apiCells(kubeconfig string, concurrency []int) map[string]map[int]result {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 1e6, 1e6 // measure the server, not client-side throttling
	c := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	out := map[string]map[int]result{}
	put := func(op string, n int, r result) {
		if out[op] == nil {
			out[op] = map[int]result{}
		}
		out[op][n] = r
	}
	data := map[string]string{"v": string(value)}
	for _, n := range concurrency {
		ns := fmt.Sprintf("bench-%d-%d", n, time.Now().UnixNano())
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		objs := make([]map[int]*corev1.ConfigMap, n)
		for i := range objs {
			objs[i] = map[int]*corev1.ConfigMap{}
		}
		var mu sync.Mutex
		put("create", n, run(n, func(cl, i int) error {
			cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d-%d", cl, i)}, Data: data}, metav1.CreateOptions{})
			if err == nil {
				mu.Lock()
				objs[cl][i] = cm
				mu.Unlock()
			}
			return err
		}))
		counts := make([]int, n)
		for i := range counts {
			counts[i] = len(objs[i])
		}
		put("update", n, run(n, func(cl, i int) error {
			mu.Lock()
			cm := objs[cl][i%counts[cl]].DeepCopy()
			mu.Unlock()
			cm.Data["i"] = fmt.Sprint(i)
			got, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			if err == nil {
				mu.Lock()
				objs[cl][i%counts[cl]] = got
				mu.Unlock()
			}
			return err
		}))
		put("get", n, run(n, func(cl, i int) error {
			_, err := c.CoreV1().ConfigMaps(ns).Get(ctx, fmt.Sprintf("c%d-%d", cl, i%counts[cl]), metav1.GetOptions{})
			return err
		}))
		// A quorum list (resourceVersion ""), as controllers' first list:
		// it reaches the datastore.
		put("list", n, run(n, func(cl, i int) error {
			_, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 100})
			return err
		}))
	}
	return out
}
