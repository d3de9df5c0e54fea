// Package helm installs, upgrades and uninstalls the releases that
// helm.cattle.io/v1 HelmChart resources ask for (k3s's API), with the Helm
// Go SDK in the server process. k3s runs the helm CLI in a job pod for each
// change; that needs an image an air-gapped site does not have, so here
// helm is a library call and the chart comes from the resource itself
// (chartContent), from the server's static charts folder, or from a repo.
//
// A HelmChartConfig with the HelmChart's name and namespace adds its
// values on top (k3s's way to configure a packaged chart). Values: the
// HelmChart's valuesContent and valuesSecrets, then the HelmChartConfig's,
// each merged over the one before, then spec.set. A finalizer makes sure the
// release is uninstalled before a deleted HelmChart goes.
package helm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"helm.sh/helm/v4/pkg/strvals"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("helm")

const (
	// Finalizer keeps a deleted HelmChart until its release is uninstalled.
	// k3s's name, so a HelmChart moved between the two is handled alike.
	Finalizer = "wrangler.cattle.io/on-helm-chart-remove"
	// hashLabel on a release records what it was made from, so an
	// unchanged HelmChart is not upgraded again at every resync or restart
	// (k3s's label).
	hashLabel = "helmcharts.helm.cattle.io/configHash"
	// unmanagedAnnotation on a HelmChart leaves it to someone else.
	unmanagedAnnotation = "helmcharts.helm.cattle.io/unmanaged"
	// staticPrefix is how k3s manifests name a chart the server carries:
	// https://%{KUBERNETES_API}%/static/charts/<file>.tgz.
	staticPrefix   = "/static/charts/"
	defaultTimeout = 5 * time.Minute
)

// Controller reconciles HelmCharts.
type Controller struct {
	Config     *rest.Config
	Kubeconfig string // for helm's own clients
	StaticDir  string // <data-dir>/server/static/charts
	CacheDir   string // <data-dir>/server/helm: repository cache, discovery cache

	dyn    dynamic.Interface
	client kubernetes.Interface
	mu     sync.Mutex
	flags  map[string]*genericclioptions.ConfigFlags // by namespace
}

// Run reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	var err error
	if c.dyn, err = dynamic.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	if c.client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 15*time.Minute)
	charts := factory.ForResource(HelmChartResource)
	configs := factory.ForResource(HelmChartConfigResource)
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}
	if _, err := charts.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	// A HelmChartConfig names its HelmChart by its own name and namespace.
	if _, err := configs.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), charts.Informer().HasSynced, configs.Informer().HasSynced) {
		return nil
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	// One worker: helm actions on one release must not overlap, and
	// releases are few.
	for {
		key, quit := queue.Get()
		if quit {
			return nil
		}
		err := c.reconcile(ctx, key, charts.Lister(), configs.Lister())
		if err != nil && ctx.Err() == nil {
			log.Warnf("%s: %v (retrying)", key, err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

type lister interface {
	ByNamespace(namespace string) cache.GenericNamespaceLister
}

func (c *Controller) reconcile(ctx context.Context, key string, charts, configs lister) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := charts.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var hc HelmChart
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.(*unstructured.Unstructured).Object, &hc); err != nil {
		return fmt.Errorf("read HelmChart: %w", err)
	}
	var hcc *HelmChartConfig
	if obj, err := configs.ByNamespace(ns).Get(name); err == nil {
		hcc = &HelmChartConfig{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.(*unstructured.Unstructured).Object, hcc); err != nil {
			return fmt.Errorf("read HelmChartConfig: %w", err)
		}
	}
	if _, ok := hc.Annotations[unmanagedAnnotation]; ok {
		return nil
	}
	target := hc.Spec.TargetNamespace
	if target == "" {
		target = hc.Namespace
	}
	resource := c.dyn.Resource(HelmChartResource).Namespace(ns)

	if hc.DeletionTimestamp != nil {
		if !slices.Contains(hc.Finalizers, Finalizer) {
			return nil
		}
		if err := c.uninstall(target, &hc); err != nil {
			return err
		}
		return c.setFinalizer(ctx, resource, &hc, false)
	}
	if !slices.Contains(hc.Finalizers, Finalizer) {
		// The update brings the HelmChart back through the queue.
		return c.setFinalizer(ctx, resource, &hc, true)
	}

	rel, applyErr := c.apply(ctx, target, &hc, hcc)
	if err := c.setStatus(ctx, resource, &hc, rel, applyErr); err != nil && applyErr == nil {
		return err
	}
	return applyErr
}

func (c *Controller) setFinalizer(ctx context.Context, r dynamic.ResourceInterface, hc *HelmChart, on bool) error {
	fin := slices.DeleteFunc(slices.Clone(hc.Finalizers), func(f string) bool { return f == Finalizer })
	if on {
		fin = append(fin, Finalizer)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": fin, "resourceVersion": hc.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = r.Patch(ctx, hc.Name, "application/merge-patch+json", patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// release is what one reconcile did.
type release struct {
	name, namespace, chart, action string
	revision                       int
}

// apply installs or upgrades the release unless the last one was made from
// the same chart and values.
func (c *Controller) apply(ctx context.Context, target string, hc *HelmChart, hcc *HelmChartConfig) (*release, error) {
	ch, source, err := c.loadChart(hc)
	if err != nil {
		return nil, err
	}
	vals, err := c.values(ctx, hc, hcc)
	if err != nil {
		return nil, err
	}
	hash, err := digest(source, vals, target, hc.Spec.CreateNamespace)
	if err != nil {
		return nil, err
	}
	cfg, err := c.actionConfig(target)
	if err != nil {
		return nil, err
	}
	timeout := defaultTimeout
	if hc.Spec.Timeout != nil && hc.Spec.Timeout.Duration > 0 {
		timeout = hc.Spec.Timeout.Duration
	}
	meta, err := chart.NewDefaultAccessor(ch)
	if err != nil {
		return nil, err
	}
	chartName := meta.Name()
	if md := meta.MetadataAsMap(); md != nil {
		if v, ok := md["Version"].(string); ok && v != "" {
			chartName += "-" + v
		}
	}
	out := &release{name: hc.Name, namespace: target, chart: chartName}
	labels := map[string]string{hashLabel: hash}

	last, err := lastRelease(cfg, hc.Name)
	if err != nil {
		return nil, err
	}
	if last != nil && last.Info != nil && last.Info.Status == releasecommon.StatusDeployed && last.Labels[hashLabel] == hash {
		out.action, out.revision = "unchanged", last.Version
		return out, nil
	}
	failurePolicy := hc.Spec.FailurePolicy
	if hcc != nil && hcc.Spec.FailurePolicy != "" {
		failurePolicy = hcc.Spec.FailurePolicy
	}
	// A failed release: failurePolicy reinstall (the default) starts over,
	// abort keeps it for inspection, retry upgrades it.
	if last != nil && last.Info != nil && last.Info.Status != releasecommon.StatusDeployed && failurePolicy != "retry" {
		if failurePolicy == "abort" {
			return nil, fmt.Errorf("release %s/%s is %s and failurePolicy is abort: fix it, or delete it with helm, then change the HelmChart", target, hc.Name, last.Info.Status)
		}
		if err := c.uninstall(target, hc); err != nil {
			return nil, err
		}
		last = nil
	}
	serverSide, forceConflicts := hc.Spec.ServerSide, hc.Spec.ForceConflicts
	if hcc != nil && hcc.Spec.ServerSide != "" {
		serverSide = hcc.Spec.ServerSide
	}
	if hcc != nil && hcc.Spec.ForceConflicts != nil {
		forceConflicts = *hcc.Spec.ForceConflicts
	}
	if serverSide == "" {
		serverSide = "auto" // upgrades keep the release's apply method
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	var done any
	if last == nil {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = hc.Name, target, hc.Spec.CreateNamespace
		in.Timeout, in.WaitStrategy, in.Labels = timeout, kube.HookOnlyStrategy, labels
		in.ServerSideApply, in.ForceConflicts, in.TakeOwnership = serverSide != "false", forceConflicts, hc.Spec.TakeOwnership
		in.Description = "installed by the cluster server from HelmChart " + hc.Namespace + "/" + hc.Name
		log.Infof("installing %s/%s (chart %s)…", target, hc.Name, chartName)
		done, err = in.RunWithContext(ctx, ch, vals)
		out.action = "installed"
	} else {
		up := action.NewUpgrade(cfg)
		up.Namespace, up.Timeout, up.WaitStrategy, up.Labels = target, timeout, kube.HookOnlyStrategy, labels
		up.ServerSideApply, up.ForceConflicts, up.TakeOwnership = serverSide, forceConflicts, hc.Spec.TakeOwnership
		up.Description = "upgraded by the cluster server from HelmChart " + hc.Namespace + "/" + hc.Name
		log.Infof("upgrading %s/%s (chart %s)…", target, hc.Name, chartName)
		done, err = up.RunWithContext(ctx, hc.Name, ch, vals)
		out.action = "upgraded"
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", strings.TrimSuffix(out.action, "ed")+"ing", target, hc.Name, err)
	}
	if r, ok := done.(*releasev1.Release); ok {
		out.revision = r.Version
	}
	log.Infof("%s %s/%s, revision %d", out.action, target, hc.Name, out.revision)
	return out, nil
}

func lastRelease(cfg *action.Configuration, name string) (*releasev1.Release, error) {
	r, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("release %s: unexpected type %T", name, r)
	}
	return rel, nil
}

func (c *Controller) uninstall(target string, hc *HelmChart) error {
	cfg, err := c.actionConfig(target)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound, un.WaitStrategy, un.Timeout = true, kube.HookOnlyStrategy, defaultTimeout
	if _, err := un.Run(hc.Name); err != nil {
		return fmt.Errorf("uninstall %s/%s: %w", target, hc.Name, err)
	}
	log.Infof("uninstalled %s/%s", target, hc.Name)
	return nil
}

// loadChart returns the chart and a stable description of where it came
// from (for the hash): its bytes' digest, or repo, name and version.
func (c *Controller) loadChart(hc *HelmChart) (chart.Charter, string, error) {
	switch {
	case hc.Spec.ChartContent != "":
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(hc.Spec.ChartContent))
		if err != nil {
			return nil, "", fmt.Errorf("chartContent: not base64: %w", err)
		}
		return loadArchive(data, "chartContent")
	case hc.Spec.Chart == "":
		return nil, "", errors.New("spec.chart or spec.chartContent is required")
	}
	if file, ok := staticChart(hc.Spec.Chart); ok {
		data, err := os.ReadFile(filepath.Join(c.StaticDir, file))
		if err != nil {
			return nil, "", fmt.Errorf("chart %s: %w (the server's static charts are in %s)", hc.Spec.Chart, err, c.StaticDir)
		}
		return loadArchive(data, hc.Spec.Chart)
	}
	settings := cli.New()
	settings.RepositoryCache = filepath.Join(c.CacheDir, "repository")
	settings.RepositoryConfig = filepath.Join(c.CacheDir, "repositories.yaml")
	opts := action.ChartPathOptions{
		RepoURL: hc.Spec.Repo, Version: hc.Spec.Version,
		InsecureSkipTLSVerify: hc.Spec.InsecureSkipTLSVerify, PlainHTTP: hc.Spec.PlainHTTP,
		PassCredentialsAll: hc.Spec.AuthPassCredentials,
	}
	if hc.Spec.RepoCA != "" {
		caFile := filepath.Join(c.CacheDir, "ca", hc.Namespace+"_"+hc.Name+".pem")
		if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(caFile, []byte(hc.Spec.RepoCA), 0o600); err != nil {
			return nil, "", err
		}
		opts.CaFile = caFile
	}
	where, err := opts.LocateChart(hc.Spec.Chart, settings)
	if err != nil {
		return nil, "", fmt.Errorf("chart %q (repo %q, version %q): %w", hc.Spec.Chart, hc.Spec.Repo, hc.Spec.Version, err)
	}
	data, err := os.ReadFile(where)
	if err != nil {
		return nil, "", err
	}
	return loadArchive(data, hc.Spec.Chart)
}

// staticChart reports whether chart names a file of the server's static
// charts folder, k3s-style (https://%{KUBERNETES_API}%/static/charts/x.tgz,
// or that URL with the server's address in it).
func staticChart(ref string) (string, bool) {
	ref = strings.Replace(ref, "%{KUBERNETES_API}%", "kubernetes-api", 1)
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "https" || !strings.HasPrefix(u.Path, staticPrefix) {
		return "", false
	}
	file := path.Base(u.Path)
	if file != strings.TrimPrefix(u.Path, staticPrefix) || file == "." || file == ".." {
		return "", false
	}
	return file, true
}

func loadArchive(data []byte, what string) (chart.Charter, string, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("%s: not a chart archive: %w", what, err)
	}
	sum := sha256.Sum256(data)
	return ch, hex.EncodeToString(sum[:]), nil
}

// values merges the HelmChart's values, the HelmChartConfig's over them,
// then spec.set (strings as --set-string, like k3s, except true/false).
func (c *Controller) values(ctx context.Context, hc *HelmChart, hcc *HelmChartConfig) (map[string]any, error) {
	merged := map[string]any{}
	layer := func(what, content string) error {
		v, err := common.ReadValues([]byte(content))
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		merged = chartutil.CoalesceTables(v.AsMap(), merged)
		return nil
	}
	secretLayers := func(specs []SecretSpec) error {
		for _, s := range specs {
			sec, err := c.client.CoreV1().Secrets(hc.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("valuesSecrets %s: %w", s.Name, err)
			}
			keys := s.Keys
			if len(keys) == 0 {
				for k := range sec.Data {
					keys = append(keys, k)
				}
				sort.Strings(keys)
			}
			for _, k := range keys {
				data, ok := sec.Data[k]
				if !ok {
					return fmt.Errorf("valuesSecrets %s: no key %q", s.Name, k)
				}
				if err := layer("valuesSecrets "+s.Name+"/"+k, string(data)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	structured := func(v *apiextensionsv1.JSON) string {
		if v == nil {
			return ""
		}
		return string(v.Raw) // JSON is YAML
	}
	if err := layer("valuesContent", hc.Spec.ValuesContent); err != nil {
		return nil, err
	}
	if err := layer("values", structured(hc.Spec.Values)); err != nil {
		return nil, err
	}
	if err := secretLayers(hc.Spec.ValuesSecrets); err != nil {
		return nil, err
	}
	if hcc != nil {
		if err := layer("HelmChartConfig valuesContent", hcc.Spec.ValuesContent); err != nil {
			return nil, err
		}
		if err := layer("HelmChartConfig values", structured(hcc.Spec.Values)); err != nil {
			return nil, err
		}
		if err := secretLayers(hcc.Spec.ValuesSecrets); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(hc.Spec.Set))
	for k := range hc.Spec.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := hc.Spec.Set[k]
		var err error
		if s := v.String(); v.Type == intstr.Int || slices.Contains([]string{"true", "false", "null"}, strings.ToLower(s)) {
			err = strvals.ParseInto(k+"="+s, merged)
		} else {
			err = strvals.ParseIntoString(k+"="+escapeCommas(s), merged)
		}
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", k, err)
		}
	}
	return merged, nil
}

// escapeCommas keeps a string value whole: --set-string splits at commas.
func escapeCommas(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == ',' && (i == 0 || s[i-1] != '\\') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func digest(source string, vals map[string]any, target string, createNamespace bool) (string, error) {
	b, err := json.Marshal(struct {
		Source, Target string
		Values         map[string]any
		Create         bool
	}{source, target, vals, createNamespace})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}

// actionConfig is helm's configuration for one target namespace; releases
// are stored as Secrets there, as the helm CLI does.
func (c *Controller) actionConfig(namespace string) (*action.Configuration, error) {
	c.mu.Lock()
	if c.flags == nil {
		c.flags = map[string]*genericclioptions.ConfigFlags{}
	}
	flags, ok := c.flags[namespace]
	if !ok {
		flags = genericclioptions.NewConfigFlags(false)
		kubeconfig, ns, cacheDir := c.Kubeconfig, namespace, filepath.Join(c.CacheDir, "discovery")
		flags.KubeConfig, flags.Namespace, flags.CacheDir = &kubeconfig, &ns, &cacheDir
		c.flags[namespace] = flags
	}
	c.mu.Unlock()
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, nil
}

// setStatus records the outcome in k3s's condition types: Failed (with
// the error), and Deployed (ours: which revision of which chart).
func (c *Controller) setStatus(ctx context.Context, r dynamic.ResourceInterface, hc *HelmChart, rel *release, applyErr error) error {
	var conds []HelmChartCondition
	if applyErr != nil {
		conds = []HelmChartCondition{
			{Type: "JobCreated", Status: corev1.ConditionFalse, Reason: "InProcess", Message: "helm runs in the server process"},
			{Type: "Failed", Status: corev1.ConditionTrue, Reason: "Error", Message: applyErr.Error()},
			{Type: "Deployed", Status: corev1.ConditionFalse, Reason: "Error"},
		}
	} else {
		conds = []HelmChartCondition{
			{Type: "JobCreated", Status: corev1.ConditionFalse, Reason: "InProcess", Message: "helm runs in the server process"},
			{Type: "Failed", Status: corev1.ConditionFalse},
			{Type: "Deployed", Status: corev1.ConditionTrue, Reason: "Helm",
				Message: fmt.Sprintf("release %s/%s revision %d, chart %s", rel.namespace, rel.name, rel.revision, rel.chart)},
		}
	}
	status := HelmChartStatus{Conditions: conds}
	b1, _ := json.Marshal(hc.Status)
	b2, _ := json.Marshal(status)
	if bytes.Equal(b1, b2) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = r.Patch(ctx, hc.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
