// Package kubeconfig writes kubeconfig files: the admin's, the control-plane
// components' and the node components'.
package kubeconfig

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/cluster-io/cluster/internal/fileutil"
)

// Spec says who talks to which server.
type Spec struct {
	Server   string // https://127.0.0.1:6443
	CAFile   string
	CertFile string
	KeyFile  string
	// Embed copies the certificate data into the file, so it can be moved
	// to another machine (the admin kubeconfig); otherwise paths are kept.
	Embed bool
}

// Build returns the kubeconfig for spec.
func Build(spec Spec) (*clientcmdapi.Config, error) {
	cluster := &clientcmdapi.Cluster{Server: spec.Server}
	user := &clientcmdapi.AuthInfo{}
	if spec.Embed {
		var err error
		if cluster.CertificateAuthorityData, err = os.ReadFile(spec.CAFile); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		if user.ClientCertificateData, err = os.ReadFile(spec.CertFile); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		if user.ClientKeyData, err = os.ReadFile(spec.KeyFile); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	} else {
		cluster.CertificateAuthority = spec.CAFile
		user.ClientCertificate = spec.CertFile
		user.ClientKey = spec.KeyFile
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = cluster
	cfg.AuthInfos["default"] = user
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	return cfg, nil
}

// Write renders spec to path with the given mode, through a temporary file
// and a rename so readers never see half a file.
func Write(path string, mode os.FileMode, spec Spec) error {
	cfg, err := Build(spec)
	if err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig %s: %w", path, err)
	}
	if err := fileutil.WriteAtomic(path, data, mode); err != nil {
		return err
	}
	// A rename keeps the temp file's mode, but be explicit: the user asked for it.
	return os.Chmod(path, mode)
}
