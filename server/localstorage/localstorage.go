// Package localstorage is the local-path provisioner (k3s's local-storage
// component, provisioner name rancher.io/local-path) in the server process.
// A claim of the local-path StorageClass (charts/local-storage.yaml) waits
// for its first pod (WaitForFirstConsumer); once the scheduler picked the
// node, the volume is a directory under that node's storage directory
// (<data-dir>/storage, from the node's cluster.io/local-storage-path
// annotation), served as a hostPath PersistentVolume pinned to the node.
//
// The directory is made (mode 0777, so a pod of any user can write it) and
// removed when the claim goes by a short-lived helper pod on that node,
// whose image every node makes from the bundled local-path-helper binary:
// nothing is pulled. The volume controller itself comes from
// sig-storage-lib-external-provisioner, like upstream local-path-provisioner.
package localstorage

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/cluster-io/cluster/agent"
	"github.com/cluster-io/cluster/logging"
)

var log = logging.For("local-storage")

const (
	// ProvisionerName is the one k3s's StorageClass names, so manifests
	// written for k3s keep working.
	ProvisionerName = "rancher.io/local-path"
	// nodeAnnotation on a PV names the node that holds its directory.
	nodeAnnotation  = "cluster.io/local-path-node"
	helperNamespace = "kube-system"
	helperTimeout   = 2 * time.Minute
)

// Controller provisions and deletes local-path volumes.
type Controller struct {
	pc *controller.ProvisionController
}

// New builds the controller. Build it before anything else in the process
// starts: the library's constructor registers the core types in client-go's
// global scheme again (a map write), and the apiserver, the
// controller-manager and every client in this process read that scheme
// without a lock. One such write during the controller-manager's walk of
// the scheme crashed a server at start ("concurrent map iteration and map
// write", seen in CI).
func New(ctx context.Context, cs kubernetes.Interface) *Controller {
	// Leader election is ours (server/leader.go) when servers share a
	// datastore; the library's would exit the process on a lost lease.
	pc := controller.NewProvisionController(ctx, cs, ProvisionerName, &Provisioner{Client: cs},
		controller.LeaderElection(false), controller.FailedProvisionThreshold(0), controller.FailedDeleteThreshold(0))
	return &Controller{pc: pc}
}

// NewForConfig is New with a client for cfg.
func NewForConfig(ctx context.Context, cfg *rest.Config) (*Controller, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("local-storage: %w", err)
	}
	return New(ctx, cs), nil
}

// Run provisions and deletes local-path volumes until ctx ends. It runs
// once per controller: the library's queues end with it.
func (c *Controller) Run(ctx context.Context) error {
	c.pc.Run(ctx)
	return nil
}

// Provisioner makes and removes the node directories behind local-path
// volumes.
type Provisioner struct {
	Client kubernetes.Interface
	// PollInterval is how often a helper pod is checked (default 500 ms).
	PollInterval time.Duration
}

// Provision makes the claim's directory on the node the scheduler chose.
func (p *Provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	pvc := opts.PVC
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("local-path volumes live on one node: StorageClass %s needs volumeBindingMode: WaitForFirstConsumer", opts.StorageClass.Name)
	}
	if pvc.Spec.Selector != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("local-path does not support claims with a selector")
	}
	for _, m := range pvc.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("local-path supports ReadWriteOnce and ReadWriteOncePod, not %s", m)
		}
	}
	node, err := p.Client.CoreV1().Nodes().Get(ctx, opts.SelectedNodeName, metav1.GetOptions{})
	if err != nil {
		return nil, controller.ProvisioningNoChange, fmt.Errorf("node %s: %w", opts.SelectedNodeName, err)
	}
	base := node.Annotations[agent.StorageAnnotation]
	if base == "" || !filepath.IsAbs(base) {
		return nil, controller.ProvisioningNoChange, fmt.Errorf("node %s has not published its storage directory (annotation %s) yet", node.Name, agent.StorageAnnotation)
	}
	dir := volumeDir(opts.PVName, pvc)
	if err := p.runHelper(ctx, node.Name, base, "create", dir); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	hostname := node.Labels[corev1.LabelHostname]
	if hostname == "" {
		hostname = node.Name
	}
	directoryOrCreate := corev1.HostPathDirectoryOrCreate
	reclaim := corev1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	log.Infof("volume %s for %s/%s: %s on node %s", opts.PVName, pvc.Namespace, pvc.Name, filepath.Join(base, dir), node.Name)
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        opts.PVName,
			Annotations: map[string]string{nodeAnnotation: node.Name},
		},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   pvc.Spec.AccessModes,
			VolumeMode:                    pvc.Spec.VolumeMode,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			MountOptions:                  opts.StorageClass.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(base, dir), Type: &directoryOrCreate},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

// Delete removes the volume's directory on its node. A node that no longer
// exists has nothing left to clean.
func (p *Provisioner) Delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	nodeName := pv.Annotations[nodeAnnotation]
	if pv.Spec.HostPath == nil || nodeName == "" {
		return &controller.IgnoredError{Reason: "not a local-path volume of this provisioner"}
	}
	if _, err := p.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		log.Warnf("volume %s: node %s is gone; nothing to remove", pv.Name, nodeName)
		return nil
	}
	base, dir := filepath.Split(filepath.Clean(pv.Spec.HostPath.Path))
	if err := p.runHelper(ctx, nodeName, filepath.Clean(base), "delete", dir); err != nil {
		return err
	}
	log.Infof("volume %s: removed %s on node %s", pv.Name, pv.Spec.HostPath.Path, nodeName)
	return nil
}

// volumeDir is upstream local-path-provisioner's directory name, so an
// operator finds a claim's data by its namespace and name.
func volumeDir(pvName string, pvc *corev1.PersistentVolumeClaim) string {
	return strings.Join([]string{pvName, pvc.Namespace, pvc.Name}, "_")
}

// runHelper runs `local-path-helper op dir` in a pod on node, with base
// mounted at /data, and waits for it to finish.
func (p *Provisioner) runHelper(ctx context.Context, node, base, op, dir string) error {
	pods := p.Client.CoreV1().Pods(helperNamespace)
	name := helperPodName(op, dir)
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("helper pod %s: %w", name, err)
	}
	pod := helperPod(name, node, base, op, dir)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("helper pod %s: %w", name, err)
	}
	defer func() {
		// A fresh context: the pod must go even if ctx ended.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = pods.Delete(dctx, name, metav1.DeleteOptions{})
	}()
	interval := p.PollInterval
	if interval == 0 {
		interval = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	for {
		got, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			switch got.Status.Phase {
			case corev1.PodSucceeded:
				return nil
			case corev1.PodFailed:
				return fmt.Errorf("%s %s on node %s failed: %s", op, dir, node, terminationMessage(got))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s on node %s: helper pod %s did not finish in %s", op, dir, node, name, helperTimeout)
		case <-time.After(interval):
		}
	}
}

func helperPodName(op, dir string) string {
	name := "local-path-" + op + "-" + strings.SplitN(dir, "_", 2)[0]
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimRight(name, "-")
}

func helperPod(name, node, base, op, dir string) *corev1.Pod {
	directoryOrCreate := corev1.HostPathDirectoryOrCreate
	noToken := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: helperNamespace, Labels: map[string]string{"app": "local-path-helper"}},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &noToken,
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:                     "helper",
				Image:                    agent.LocalPathHelperImage,
				ImagePullPolicy:          corev1.PullNever,
				Args:                     []string{op, dir},
				VolumeMounts:             []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: base, Type: &directoryOrCreate},
			}}},
		},
	}
}

func terminationMessage(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			if t.Message != "" {
				return strings.TrimSpace(t.Message)
			}
			return fmt.Sprintf("exit code %d", t.ExitCode)
		}
	}
	return "no container status"
}
