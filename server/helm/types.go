package helm

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The helm.cattle.io/v1 resources, in k3s's shape so that manifests written
// for k3s apply here. Fields that only make sense for k3s's job pods
// (jobImage, backOffLimit, podSecurityContext, securityContext,
// dockerRegistrySecret, helmVersion, bootstrap) are accepted and ignored:
// helm runs in the server process. k3s's condition types are kept (Failed;
// JobCreated is always False: there is no job) and Deployed is added.
var (
	HelmChartResource       = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}
	HelmChartConfigResource = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmchartconfigs"}
)

// HelmChart asks for one helm release.
type HelmChart struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HelmChartSpec   `json:"spec,omitempty"`
	Status            HelmChartStatus `json:"status,omitempty"`
}

// HelmChartSpec is k3s's, minus nothing.
type HelmChartSpec struct {
	TargetNamespace       string                        `json:"targetNamespace,omitempty"`
	CreateNamespace       bool                          `json:"createNamespace,omitempty"`
	Chart                 string                        `json:"chart,omitempty"`
	Version               string                        `json:"version,omitempty"`
	Repo                  string                        `json:"repo,omitempty"`
	RepoCA                string                        `json:"repoCA,omitempty"`
	RepoCAConfigMap       *corev1.LocalObjectReference  `json:"repoCAConfigMap,omitempty"`
	Set                   map[string]intstr.IntOrString `json:"set,omitempty"`
	Values                *apiextensionsv1.JSON         `json:"values,omitempty"`
	ValuesContent         string                        `json:"valuesContent,omitempty"`
	ValuesSecrets         []SecretSpec                  `json:"valuesSecrets,omitempty"`
	TakeOwnership         bool                          `json:"takeOwnership,omitempty"`
	ServerSide            string                        `json:"serverSide,omitempty"`
	ForceConflicts        bool                          `json:"forceConflicts,omitempty"`
	HelmVersion           string                        `json:"helmVersion,omitempty"`
	Bootstrap             bool                          `json:"bootstrap,omitempty"`
	ChartContent          string                        `json:"chartContent,omitempty"`
	JobImage              string                        `json:"jobImage,omitempty"`
	BackOffLimit          *int32                        `json:"backOffLimit,omitempty"`
	Timeout               *metav1.Duration              `json:"timeout,omitempty"`
	FailurePolicy         string                        `json:"failurePolicy,omitempty"`
	AuthSecret            *corev1.LocalObjectReference  `json:"authSecret,omitempty"`
	AuthPassCredentials   bool                          `json:"authPassCredentials,omitempty"`
	InsecureSkipTLSVerify bool                          `json:"insecureSkipTLSVerify,omitempty"`
	PlainHTTP             bool                          `json:"plainHTTP,omitempty"`
	Driver                string                        `json:"driver,omitempty"`
}

// SecretSpec names a Secret whose keys hold values files.
type SecretSpec struct {
	Name          string   `json:"name,omitempty"`
	Keys          []string `json:"keys,omitempty"`
	IgnoreUpdates bool     `json:"ignoreUpdates,omitempty"`
}

// HelmChartStatus reports the last reconcile.
type HelmChartStatus struct {
	JobName    string               `json:"jobName,omitempty"`
	Conditions []HelmChartCondition `json:"conditions,omitempty"`
}

// HelmChartCondition is one condition (k3s's JobCreated and Failed, plus
// our Deployed).
type HelmChartCondition struct {
	Type    string                 `json:"type"`
	Status  corev1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason,omitempty"`
	Message string                 `json:"message,omitempty"`
}

// HelmChartConfig overrides the values of the HelmChart with its name and
// namespace (for a packaged chart the user did not write).
type HelmChartConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HelmChartConfigSpec `json:"spec,omitempty"`
}

// HelmChartConfigSpec is k3s's.
type HelmChartConfigSpec struct {
	Values         *apiextensionsv1.JSON `json:"values,omitempty"`
	ValuesContent  string                `json:"valuesContent,omitempty"`
	ValuesSecrets  []SecretSpec          `json:"valuesSecrets,omitempty"`
	FailurePolicy  string                `json:"failurePolicy,omitempty"`
	ServerSide     string                `json:"serverSide,omitempty"`
	ForceConflicts *bool                 `json:"forceConflicts,omitempty"`
}
