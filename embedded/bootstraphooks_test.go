package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	genericapiserver "k8s.io/apiserver/pkg/server"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"
)

// The first attempt comes at once: with an hour between attempts, a
// condition that is done at once must not wait for the interval (upstream's
// wait.Poll would sleep it first).
func TestTryNowThenEveryTriesAtOnce(t *testing.T) {
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- tryNowThenEvery(context.Background(), time.Hour, 2*time.Hour, func(context.Context) (bool, error) {
			calls++
			return true, nil
		})
	}()
	select {
	case err := <-done:
		if err != nil || calls != 1 {
			t.Fatalf("err %v after %d calls, want nil after 1", err, calls)
		}
	case <-time.After(time.Minute):
		t.Fatal("the first attempt waited for the interval")
	}
}

func TestTryNowThenEveryRetriesAndFails(t *testing.T) {
	calls := 0
	err := tryNowThenEvery(context.Background(), time.Millisecond, time.Minute, func(context.Context) (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil || calls != 3 {
		t.Errorf("not done twice, then done: err %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := tryNowThenEvery(context.Background(), time.Millisecond, time.Minute, func(context.Context) (bool, error) {
		return false, boom
	}); !errors.Is(err, boom) {
		t.Errorf("a failing condition: err %v, want boom", err)
	}
	if err := tryNowThenEvery(context.Background(), time.Millisecond, 20*time.Millisecond, func(context.Context) (bool, error) {
		return false, nil
	}); err == nil {
		t.Error("never done: no error after the timeout")
	}
}

func TestEnsurePriorityClasses(t *testing.T) {
	existing := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 42}
	for _, tc := range []struct {
		name        string
		objects     []runtime.Object
		failGet     error
		failCreate  error
		wantDone    bool
		wantErr     bool
		wantCreated []string
	}{
		{name: "none exist: both made", wantDone: true, wantCreated: []string{"system-cluster-critical", "system-node-critical"}},
		{name: "one exists: kept as it is, the other made", objects: []runtime.Object{existing}, wantDone: true, wantCreated: []string{"system-cluster-critical"}},
		{name: "get fails: try again", failGet: apierrors.NewInternalError(errors.New("etcd")), wantDone: false},
		{name: "apiserver not serving yet: try again", failCreate: apierrors.NewServiceUnavailable("starting"), wantDone: false},
		{name: "create refused: fail", failCreate: apierrors.NewForbidden(schema.GroupResource{Resource: "priorityclasses"}, "x", errors.New("no")), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset(tc.objects...)
			if tc.failGet != nil {
				c.PrependReactor("get", "priorityclasses", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.failGet })
			}
			if tc.failCreate != nil {
				c.PrependReactor("create", "priorityclasses", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.failCreate })
			}
			done, err := ensurePriorityClasses(context.Background(), c.SchedulingV1().PriorityClasses())
			if done != tc.wantDone || (err != nil) != tc.wantErr {
				t.Fatalf("done %v, err %v; want done %v, error %v", done, err, tc.wantDone, tc.wantErr)
			}
			var created []string
			for _, a := range c.Actions() {
				if a.GetVerb() == "create" && tc.failCreate == nil {
					created = append(created, a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName())
				}
			}
			if !sets.NewString(created...).Equal(sets.NewString(tc.wantCreated...)) {
				t.Errorf("created %v, want %v", created, tc.wantCreated)
			}
			if pc, err := c.SchedulingV1().PriorityClasses().Get(context.Background(), "system-node-critical", metav1.GetOptions{}); tc.objects != nil && (err != nil || pc.Value != 42) {
				t.Errorf("the existing class was changed: %v %v", pc, err)
			}
		})
	}
}

// Upstream's ensureRBACPolicy, reached by go:linkname, makes the bootstrap
// roles: it is the function the name says, with the signature declared.
func TestEnsureRBACPolicyIsUpstreams(t *testing.T) {
	c := fake.NewClientset()
	done, err := ensureRBACPolicy(rbacPolicy(), c)
	if err != nil || !done {
		t.Fatalf("ensureRBACPolicy: done %v, err %v", done, err)
	}
	for _, name := range []string{"cluster-admin", "system:node-proxier", "system:controller:replicaset-controller"} {
		if _, err := c.RbacV1().ClusterRoles().Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("cluster role %s: %v", name, err)
		}
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Get(context.Background(), "cluster-admin", metav1.GetOptions{}); err != nil {
		t.Errorf("cluster role binding cluster-admin: %v", err)
	}
	if _, err := c.RbacV1().Roles("kube-system").Get(context.Background(), "extension-apiserver-authentication-reader", metav1.GetOptions{}); err != nil {
		t.Errorf("role kube-system/extension-apiserver-authentication-reader: %v", err)
	}
}

func TestTakeOverBootstrapHooks(t *testing.T) {
	enabled := serverstorage.NewResourceConfig()
	enabled.EnableVersions(rbacv1.SchemeGroupVersion, schedulingv1.SchemeGroupVersion)
	noScheduling := serverstorage.NewResourceConfig()
	noScheduling.EnableVersions(rbacv1.SchemeGroupVersion)
	noScheduling.DisableVersions(schedulingv1.SchemeGroupVersion)
	for _, tc := range []struct {
		name     string
		disabled []string
		apis     serverstorage.APIResourceConfigSource
		want     bootstrapHooks
	}{
		{name: "both", apis: enabled, want: bootstrapHooks{rbac: true, priorityClasses: true}},
		{name: "RBAC not authorizing (upstream disabled its hook)", disabled: []string{rbacrest.PostStartHookName}, apis: enabled, want: bootstrapHooks{priorityClasses: true}},
		{name: "scheduling.k8s.io/v1 not served", apis: noScheduling, want: bootstrapHooks{rbac: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sets.NewString(tc.disabled...)
			generic := &genericapiserver.Config{DisabledPostStartHooks: before}
			got := takeOverBootstrapHooks(generic, tc.apis)
			if got != tc.want {
				t.Fatalf("took over %+v, want %+v", got, tc.want)
			}
			if !generic.DisabledPostStartHooks.Has(rbacrest.PostStartHookName) || generic.DisabledPostStartHooks.Has(schedulingrest.PostStartHookName) != tc.want.priorityClasses {
				t.Errorf("disabled in the kube APIs' server: %v", generic.DisabledPostStartHooks.List())
			}
			// The other servers' configs share the old set: it must not change,
			// or the aggregator would refuse the hooks too.
			if !before.Equal(sets.NewString(tc.disabled...)) {
				t.Errorf("the shared set changed: %v", before.List())
			}
		})
	}
}
