// Package deploy is the manifests folder: every YAML (or JSON) file in
// <data-dir>/server/manifests is applied to the cluster, applied again when
// it changes, and its objects are removed when the file is removed — the
// server's packaged components (written there from charts/ at every start)
// and the user's own files alike, as k3s does. Applying is wrangler's
// apply: each file is an object set (labelled with the set's hash), so a
// new version of a file prunes what it no longer holds.
package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rancher/wrangler/v3/pkg/apply"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("deploy")

// stateName is the ConfigMap (in kube-system) that remembers, per file, the
// content applied last and the kinds of its objects: what is needed to
// remove them once the file is gone, even across restarts.
const stateName = "cluster-manifests"

// Controller applies the manifests folder.
type Controller struct {
	Dir    string
	Config *rest.Config
	// Every is how often the folder is read again (default 10s).
	Every time.Duration
	// Required says which files must apply for Sync to succeed (the
	// server's own); the others' errors are logged and retried.
	Required func(name string) bool

	apply  apply.Apply
	client kubernetes.Interface
	failed map[string]string // file → last error, to log each error once
	// watched holds the state ConfigMap as a watch sees it, once Run has
	// started one: the syncs every 10 s then read it without a request.
	watched atomic.Pointer[cache.Store]
}

type fileState struct {
	Checksum string   `json:"checksum"`
	GVKs     []string `json:"gvks"` // group/version, Kind=…
}

func (c *Controller) init() error {
	if c.apply != nil {
		return nil
	}
	ap, err := apply.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	c.apply = ap.WithDynamicLookup().WithDefaultNamespace(metav1.NamespaceSystem)
	if c.client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.failed = map[string]string{}
	return nil
}

// Sync applies what changed since the last sync and removes the objects of
// files that are gone. It returns the errors of the required files it could
// not apply, joined; every other file is applied regardless.
func (c *Controller) Sync(ctx context.Context) error { return c.sync(ctx, nil) }

// SyncOnly applies the named files (when they changed) and nothing else:
// what others wait for, such as the RBAC the server's own node joins with,
// goes in before the rest.
func (c *Controller) SyncOnly(ctx context.Context, names ...string) error {
	if names == nil {
		names = []string{}
	}
	return c.sync(ctx, names)
}

// sync applies every file, and removes what files that are gone made; or,
// with only non-nil, applies just those files.
func (c *Controller) sync(ctx context.Context, only []string) error {
	if err := c.init(); err != nil {
		return err
	}
	state, err := c.loadState(ctx)
	if err != nil {
		return err
	}
	files, err := manifestFiles(c.Dir)
	if err != nil {
		return err
	}
	if only != nil {
		files = slices.DeleteFunc(files, func(name string) bool { return !slices.Contains(only, name) })
	}
	var errs []error
	changed := false
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(c.Dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sum := sha256.Sum256(data)
		checksum := hex.EncodeToString(sum[:])
		prev, known := state[name]
		if known && prev.Checksum == checksum {
			continue
		}
		objs, err := decode(data)
		if err == nil {
			err = c.applySet(ctx, name, objs, prev.GVKs)
		}
		if err != nil {
			err = c.report(name, err)
			if c.Required != nil && c.Required(name) {
				errs = append(errs, err)
			}
			continue
		}
		delete(c.failed, name)
		state[name] = fileState{Checksum: checksum, GVKs: gvks(objs)}
		changed = true
		log.Infof("applied %s (%d objects)", name, len(objs))
	}
	for name, prev := range state {
		if only != nil || slices.Contains(files, name) {
			continue
		}
		if err := c.applySet(ctx, name, nil, prev.GVKs); err != nil {
			c.report(name, err)
			continue
		}
		delete(state, name)
		changed = true
		log.Infof("removed the objects of %s (the file is gone)", name)
	}
	if changed {
		if err := c.saveState(ctx, state); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run syncs every c.Every until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	every := c.Every
	if every == 0 {
		every = 10 * time.Second
	}
	if err := c.init(); err != nil {
		return err
	}
	c.watchState(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		_ = c.Sync(ctx) // errors are logged once per file in report
	}
}

// report logs a file's error when it is new, and returns it.
func (c *Controller) report(name string, err error) error {
	err = fmt.Errorf("%s: %w", name, err)
	if c.failed[name] != err.Error() {
		log.Warnf("%v (retried every sync)", err)
		c.failed[name] = err.Error()
	}
	return err
}

// applySet applies the objects of one file as one object set; nil removes
// what an earlier version of the file created. prevGVKs are the kinds the
// earlier version had, so that a kind the file no longer holds is pruned.
func (c *Controller) applySet(ctx context.Context, name string, objs []runtime.Object, prevGVKs []string) error {
	var kinds []schema.GroupVersionKind
	for _, g := range prevGVKs {
		gv, kind, _ := strings.Cut(g, ", Kind=")
		if parsed, err := schema.ParseGroupVersion(gv); err == nil {
			kinds = append(kinds, parsed.WithKind(kind))
		}
	}
	// The owner only names the set (wrangler puts no owner reference): with
	// one, wrangler looks for the set's earlier objects in every namespace.
	owner := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: stateName, Namespace: metav1.NamespaceSystem},
	}
	return c.apply.WithContext(ctx).WithOwner(owner).WithSetID("cluster-manifest:" + name).WithGVK(kinds...).ApplyObjects(objs...)
}

// watchState keeps the state ConfigMap in a store that a watch updates,
// for loadState. Other servers sharing the datastore write it too, so it
// is watched rather than kept from our own writes. Without a synced watch
// (yet), loadState asks the apiserver.
func (c *Controller) watchState(ctx context.Context) {
	lw := cache.NewListWatchFromClient(c.client.CoreV1().RESTClient(), "configmaps", metav1.NamespaceSystem,
		fields.OneTermEqualSelector("metadata.name", stateName))
	store, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.ConfigMap{},
		Handler:       cache.ResourceEventHandlerFuncs{},
	})
	go informer.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			c.watched.Store(&store)
		}
	}()
}

func (c *Controller) loadState(ctx context.Context) (map[string]fileState, error) {
	state := map[string]fileState{}
	// A state a moment old only applies a file once more.
	cm, err := c.stateConfigMap(ctx)
	if apierrors.IsNotFound(err) {
		return state, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the applied manifests' state: %w", err)
	}
	for name, v := range cm.Data {
		var s fileState
		if json.Unmarshal([]byte(v), &s) == nil {
			state[name] = s
		}
	}
	return state, nil
}

// stateConfigMap is the state ConfigMap from the watch, or else from the
// apiserver's watch cache (resourceVersion 0), not the datastore.
func (c *Controller) stateConfigMap(ctx context.Context) (*corev1.ConfigMap, error) {
	if store := c.watched.Load(); store != nil {
		obj, exists, err := (*store).GetByKey(metav1.NamespaceSystem + "/" + stateName)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), stateName)
		}
		return obj.(*corev1.ConfigMap), nil
	}
	return c.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, stateName, metav1.GetOptions{ResourceVersion: "0"})
}

func (c *Controller) saveState(ctx context.Context, state map[string]fileState) error {
	data := map[string]string{}
	for name, s := range state {
		b, _ := json.Marshal(s)
		data[name] = string(b)
	}
	cms := c.client.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	cm, err := cms.Get(ctx, stateName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: stateName}, Data: data}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// manifestFiles are the folder's manifests, by name: *.yaml, *.yml and
// *.json, except those with a <name>.skip beside them (k3s's convention
// for keeping a packaged file from being applied).
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".skip"); ok {
			skip[n] = true
		}
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || skip[n] {
			continue
		}
		switch filepath.Ext(n) {
		case ".yaml", ".yml", ".json":
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func gvks(objs []runtime.Object) []string {
	var out []string
	for _, o := range objs {
		g := o.GetObjectKind().GroupVersionKind().String()
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

func decode(data []byte) ([]runtime.Object, error) {
	var out []runtime.Object
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := d.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" {
			return nil, fmt.Errorf("an object without apiVersion or kind")
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		out = append(out, obj)
	}
}
