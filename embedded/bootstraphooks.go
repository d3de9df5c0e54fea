package embedded

import (
	"context"
	"fmt"
	"time"
	_ "unsafe" // go:linkname, below

	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/client-go/kubernetes"
	schedulingclient "k8s.io/client-go/kubernetes/typed/scheduling/v1"
	"k8s.io/klog/v2"
	schedulingapiv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// Two of the apiserver's post-start hooks, the RBAC bootstrap
// (rbac/bootstrap-roles) and the system priority classes
// (scheduling/bootstrap-system-priority-classes), make their first attempt
// only after a 1 s wait (wait.Poll), and the apiserver is not ready, nor
// healthy for the controller-manager, until both are done: a second of
// every start and restart spent sleeping. The apiserver runs them here
// instead, under the same names, doing the same work (upstream's own
// reconciliation for RBAC) at once, then every second for 30 s, as upstream
// retries.

const (
	bootstrapRetryEvery = time.Second // upstream's interval and timeout
	bootstrapGiveUp     = 30 * time.Second
)

// bootstrapHooks are the hooks this file takes over.
type bootstrapHooks struct {
	rbac, priorityClasses bool
}

// takeOverBootstrapHooks disables upstream's two hooks in the kube APIs'
// server, for the ones that server would run: the RBAC hook when RBAC
// authorizes (upstream disables it otherwise) and its API group serves,
// the priority-class hook when scheduling.k8s.io/v1 serves. It must run
// after NewConfig, which copied the generic config (and its set of
// disabled hooks) into the aggregator's and apiextensions' configs: the
// kube APIs' server gets a set of its own, so the outermost server, the
// aggregator, can still take hooks by these names (bootstrapHooks.add).
func takeOverBootstrapHooks(generic *genericapiserver.Config, apis serverstorage.APIResourceConfigSource) bootstrapHooks {
	h := bootstrapHooks{
		rbac: !generic.DisabledPostStartHooks.Has(rbacrest.PostStartHookName) &&
			apis.ResourceEnabled(rbacv1.SchemeGroupVersion.WithResource("clusterroles")),
		priorityClasses: !generic.DisabledPostStartHooks.Has(schedulingrest.PostStartHookName) &&
			apis.ResourceEnabled(schedulingv1.SchemeGroupVersion.WithResource("priorityclasses")),
	}
	disabled := sets.NewString(generic.DisabledPostStartHooks.List()...)
	if h.rbac {
		disabled.Insert(rbacrest.PostStartHookName)
	}
	if h.priorityClasses {
		disabled.Insert(schedulingrest.PostStartHookName)
	}
	generic.DisabledPostStartHooks = disabled
	return h
}

// add registers the taken-over hooks on the outermost server.
func (h bootstrapHooks) add(s *genericapiserver.GenericAPIServer) error {
	if h.rbac {
		if err := s.AddPostStartHook(rbacrest.PostStartHookName, bootstrapRBAC); err != nil {
			return err
		}
	}
	if h.priorityClasses {
		if err := s.AddPostStartHook(schedulingrest.PostStartHookName, bootstrapPriorityClasses); err != nil {
			return err
		}
	}
	return nil
}

// ensureRBACPolicy is upstream's reconciliation of the bootstrap roles and
// bindings, the body of its rbac/bootstrap-roles hook's poll; it reports
// done, or false to try again.
//
//go:linkname ensureRBACPolicy k8s.io/kubernetes/pkg/registry/rbac/rest.ensureRBACPolicy
func ensureRBACPolicy(p *rbacrest.PolicyData, client kubernetes.Interface) (done bool, err error)

// rbacPolicy is the policy upstream's RBAC storage provider bootstraps.
func rbacPolicy() *rbacrest.PolicyData {
	return &rbacrest.PolicyData{
		ClusterRoles:               append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...),
		ClusterRoleBindings:        append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...),
		Roles:                      bootstrappolicy.NamespaceRoles(),
		RoleBindings:               bootstrappolicy.NamespaceRoleBindings(),
		ClusterRolesToAggregate:    bootstrappolicy.ClusterRolesToAggregate(),
		ClusterRoleBindingsToSplit: bootstrappolicy.ClusterRoleBindingsToSplit(),
	}
}

func bootstrapRBAC(hc genericapiserver.PostStartHookContext) error {
	client, err := kubernetes.NewForConfig(hc.LoopbackClientConfig)
	if err != nil {
		return fmt.Errorf("unable to initialize roles: %w", err)
	}
	policy := rbacPolicy()
	err = tryNowThenEvery(hc, bootstrapRetryEvery, bootstrapGiveUp, func(context.Context) (bool, error) {
		return ensureRBACPolicy(policy, client)
	})
	if err != nil {
		return fmt.Errorf("unable to initialize roles: %w", err) // upstream's words: this stops the apiserver
	}
	return nil
}

func bootstrapPriorityClasses(hc genericapiserver.PostStartHookContext) error {
	client, err := schedulingclient.NewForConfig(hc.LoopbackClientConfig)
	if err != nil {
		return fmt.Errorf("unable to add default system priority classes: %w", err)
	}
	err = tryNowThenEvery(hc, bootstrapRetryEvery, bootstrapGiveUp, func(ctx context.Context) (bool, error) {
		return ensurePriorityClasses(ctx, client.PriorityClasses())
	})
	if err != nil {
		return fmt.Errorf("unable to add default system priority classes: %w", err)
	}
	return nil
}

// ensurePriorityClasses creates the system priority classes that do not
// exist (an existing one is left as it is, as upstream does). Errors a
// retry may mend (the apiserver still starting) report not done.
func ensurePriorityClasses(ctx context.Context, client schedulingclient.PriorityClassInterface) (bool, error) {
	for _, pc := range schedulingapiv1.SystemPriorityClasses() {
		_, err := client.Get(ctx, pc.Name, metav1.GetOptions{})
		if err == nil {
			continue
		}
		if !apierrors.IsNotFound(err) {
			klog.Warningf("unable to get PriorityClass %s: %v; retrying", pc.Name, err)
			return false, nil
		}
		_, err = client.Create(ctx, pc, metav1.CreateOptions{})
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			klog.Infof("created PriorityClass %s with value %d", pc.Name, pc.Value)
		case apierrors.IsServiceUnavailable(err):
			klog.Infof("unable to create PriorityClass %s, retrying: %v", pc.Name, err)
			return false, nil
		default:
			return false, fmt.Errorf("create PriorityClass %s: %w", pc.Name, err)
		}
	}
	return true, nil
}

// tryNowThenEvery runs done at once, then every interval until it reports
// done, fails, the timeout passes or the server stops.
func tryNowThenEvery(ctx context.Context, interval, timeout time.Duration, done wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, interval, timeout, true, done)
}
