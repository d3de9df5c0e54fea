package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// annotateNode sets annotations on this node's Node object with the
// kubelet's own credentials (a node may patch itself), retrying until the
// kubelet has registered the node or ctx ends. The server reads them: the
// local-path provisioner finds the node's storage directory there.
func annotateNode(ctx context.Context, kubeconfigPath, name string, annotations map[string]string) {
	err := func() error {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
		if err != nil {
			return err
		}
		for {
			_, err := cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			case <-time.After(2 * time.Second):
			}
		}
	}()
	if err != nil && ctx.Err() == nil {
		log.Warnf("annotate node %s: %v", name, err)
	}
}
