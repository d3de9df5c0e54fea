package embedded

import (
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd/v2/cmd/containerd/server"
	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/urfave/cli/v3"
)

// Containerd is upstream containerd's daemon (its server package: the
// plugins of containerd_plugins.go) running in this process. Upstream's
// main is not used: it installs signal handlers and sets the process-wide
// log level; what it does besides is done here in the same order.
type Containerd struct{ srv *server.Server }

// NewContainerd loads the config file at configPath over containerd's
// defaults and initialises every plugin (this opens containerd's database,
// and waits for it if another containerd holds it). logger receives
// containerd's log lines.
func NewContainerd(ctx context.Context, configPath string, logger *log.Entry) (*Containerd, error) {
	log.L = logger
	config := &srvconfig.Config{
		Version:         version.ConfigVersion,
		DisabledPlugins: []string{},
		RequiredPlugins: []string{},
		Plugins: map[string]any{
			"io.containerd.server.v1.grpc": map[string]any{
				"max_recv_message_size": defaults.DefaultMaxRecvMsgSize,
				"max_send_message_size": defaults.DefaultMaxSendMsgSize,
			},
		},
	}
	graph := registry.Graph(func(*plugin.Registration) bool { return false })
	plugins := func() iter.Seq[plugin.Registration] { return slices.Values(graph) }
	if err := srvconfig.LoadConfigWithPlugins(ctx, configPath, plugins, config); err != nil {
		return nil, fmt.Errorf("config %s: %w", configPath, err)
	}
	if err := server.CreateTopLevelDirectories(config); err != nil {
		return nil, err
	}
	if err := mount.SetTempMountLocation(filepath.Join(config.Root, "tmpmounts")); err != nil {
		return nil, fmt.Errorf("temp mount location: %w", err)
	}
	warnings, err := mount.CleanupTempMounts(0)
	if err != nil {
		logger.WithError(err).Error("unmounting temp mounts")
	}
	for _, w := range warnings {
		logger.WithError(w).Warn("cleanup temp mount")
	}
	logger.WithField("version", version.Version).Info("starting containerd")
	srv, err := server.New(ctx, config)
	if err != nil {
		return nil, err
	}
	return &Containerd{srv: srv}, nil
}

// Start opens containerd's sockets; Wait returns once its plugins (the
// CRI's among them) are ready.
func (c *Containerd) Start(ctx context.Context) error { return c.srv.Start(ctx) }

// Wait blocks until every plugin that registered readiness is ready.
func (c *Containerd) Wait() { c.srv.Wait() }

// Stop closes the plugins in reverse order; containers and their shims keep
// running.
func (c *Containerd) Stop() { c.srv.Stop() }

// RunCtr runs upstream ctr against address in namespace k8s.io unless the
// user's flags or CONTAINERD_ADDRESS/CONTAINERD_NAMESPACE say otherwise.
func RunCtr(address string, args []string) error {
	app := ctrapp.New()
	for _, f := range app.Flags {
		if sf, ok := f.(*cli.StringFlag); ok {
			switch sf.Name {
			case "address":
				sf.Value = address
			case "namespace":
				sf.Value = "k8s.io"
			}
		}
	}
	return app.Run(context.Background(), append([]string{"ctr"}, args...))
}
