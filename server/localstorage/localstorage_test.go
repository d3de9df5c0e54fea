package localstorage

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/cluster-io/cluster/agent"
)

// kubeletStandIn plays the node: every helper pod it sees ends in phase
// (with message, when it fails), and it records the pods' arguments.
func kubeletStandIn(ctx context.Context, t *testing.T, cs *fake.Clientset, phase corev1.PodPhase, message string, seen chan<- *corev1.Pod) {
	go func() {
		for ctx.Err() == nil {
			list, err := cs.CoreV1().Pods(helperNamespace).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range list.Items {
					p := &list.Items[i]
					if p.Status.Phase != "" {
						continue
					}
					p.Status.Phase = phase
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{
						Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: message}}}}
					if _, err := cs.CoreV1().Pods(helperNamespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
						t.Error(err)
					}
					seen <- p.DeepCopy()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func node(name, storage string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	if storage != "" {
		n.Annotations = map[string]string{agent.StorageAnnotation: storage}
	}
	return n
}

func options(nodeName string) controller.ProvisionOptions {
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}},
		PVName:       "pvc-1234",
		PVC: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		},
		SelectedNodeName: nodeName,
	}
}

func TestProvisionMakesTheDirectoryOnTheChosenNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset(node("edge-1", "/var/lib/cluster/storage"))
	seen := make(chan *corev1.Pod, 4)
	kubeletStandIn(ctx, t, cs, corev1.PodSucceeded, "", seen)
	p := &Provisioner{Client: cs, PollInterval: time.Millisecond}

	pv, state, err := p.Provision(ctx, options("edge-1"))
	if err != nil || state != controller.ProvisioningFinished {
		t.Fatalf("Provision: %v, %v", state, err)
	}
	helper := <-seen
	if helper.Spec.NodeName != "edge-1" || strings.Join(helper.Spec.Containers[0].Args, " ") != "create pvc-1234_apps_data" ||
		helper.Spec.Volumes[0].HostPath.Path != "/var/lib/cluster/storage" || helper.Spec.Containers[0].Image != agent.LocalPathHelperImage ||
		helper.Spec.Containers[0].ImagePullPolicy != corev1.PullNever {
		t.Errorf("helper pod: node %s, args %v, volume %+v, image %s", helper.Spec.NodeName, helper.Spec.Containers[0].Args, helper.Spec.Volumes[0].HostPath, helper.Spec.Containers[0].Image)
	}
	if got := pv.Spec.HostPath.Path; got != "/var/lib/cluster/storage/pvc-1234_apps_data" {
		t.Errorf("PV path %s", got)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != corev1.LabelHostname || terms[0].MatchExpressions[0].Values[0] != "edge-1" {
		t.Errorf("PV node affinity %+v", terms)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.Capacity.Storage().String() != "1Gi" {
		t.Errorf("PV reclaim %s, capacity %s", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.Capacity.Storage())
	}
	if pods, _ := cs.CoreV1().Pods(helperNamespace).List(ctx, metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("helper pod left behind: %s", pods.Items[0].Name)
	}

	// Delete runs the helper on the same node, for the same directory.
	if err := p.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	helper = <-seen
	if helper.Spec.NodeName != "edge-1" || strings.Join(helper.Spec.Containers[0].Args, " ") != "delete pvc-1234_apps_data" || helper.Spec.Volumes[0].HostPath.Path != "/var/lib/cluster/storage" {
		t.Errorf("delete helper: node %s, args %v, volume %s", helper.Spec.NodeName, helper.Spec.Containers[0].Args, helper.Spec.Volumes[0].HostPath.Path)
	}
}

func TestProvisionRefusals(t *testing.T) {
	cs := fake.NewClientset(node("no-annotation", ""), node("edge-1", "/s"))
	p := &Provisioner{Client: cs, PollInterval: time.Millisecond}
	rwx := options("edge-1")
	rwx.PVC.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	for _, tc := range []struct {
		name  string
		opts  controller.ProvisionOptions
		state controller.ProvisioningState
		want  string
	}{
		{"immediate binding", options(""), controller.ProvisioningFinished, "needs volumeBindingMode: WaitForFirstConsumer"},
		{"ReadWriteMany", rwx, controller.ProvisioningFinished, "not ReadWriteMany"},
		{"node without storage directory", options("no-annotation"), controller.ProvisioningNoChange, "has not published its storage directory"},
		{"unknown node", options("gone"), controller.ProvisioningNoChange, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, state, err := p.Provision(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || state != tc.state {
				t.Errorf("got %v, %v; want %v and an error containing %q", state, err, tc.state, tc.want)
			}
		})
	}
}

func TestHelperFailureIsReported(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset(node("edge-1", "/s"))
	seen := make(chan *corev1.Pod, 4)
	kubeletStandIn(ctx, t, cs, corev1.PodFailed, "mkdir /data/x: read-only file system", seen)
	p := &Provisioner{Client: cs, PollInterval: time.Millisecond}
	_, state, err := p.Provision(ctx, options("edge-1"))
	if err == nil || !strings.Contains(err.Error(), "read-only file system") || state != controller.ProvisioningInBackground {
		t.Errorf("got %v, %v; want the helper's message, to be retried", state, err)
	}
}

func TestDeleteOnAGoneNodeSucceeds(t *testing.T) {
	p := &Provisioner{Client: fake.NewClientset()}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Annotations: map[string]string{nodeAnnotation: "gone"}},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/s/pvc-1_a_b"}}}}
	if err := p.Delete(context.Background(), pv); err != nil {
		t.Error(err)
	}
	foreign := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-2"}}
	if err := p.Delete(context.Background(), foreign); err == nil {
		t.Error("a PV this provisioner did not make was deleted without complaint")
	}
}

// Once built, the controller runs without registering types in client-go's
// global scheme, which every client and daemon in the server process reads
// without a lock. Were Run to register them (the library's constructor
// does), this test would die with "concurrent map iteration and map
// write", as a server once did at start.
func TestRunLeavesTheGlobalSchemeAlone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, fake.NewClientset())

	walking, stop, walked := make(chan struct{}), make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			for range scheme.Scheme.AllKnownTypes() {
			}
			if n++; n == 1 {
				close(walking)
			}
			select {
			case <-stop:
				walked <- n
				return
			default:
			}
		}
	}()
	<-walking
	runCtx, endRun := context.WithTimeout(ctx, 300*time.Millisecond)
	defer endRun()
	if err := c.Run(runCtx); err != nil {
		t.Fatalf("run: %v", err)
	}
	close(stop)
	if n := <-walked; n < 2 {
		t.Fatalf("the scheme was walked %d times while the controller ran; want many", n)
	}
}
