package flannel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCNIConfig(t *testing.T) {
	dir := t.TempDir()
	c := Config{Dir: filepath.Join(dir, "flannel"), CNIConfDir: filepath.Join(dir, "net.d"), CNIDataDir: filepath.Join(dir, "cni")}
	if err := c.WriteCNIConfig(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(c.CNIConfDir)
	if len(entries) != 1 || entries[0].Name() != "10-flannel.conflist" {
		t.Fatalf("conf dir holds %v; want only the conflist", entries)
	}
	var conf struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	b, _ := os.ReadFile(filepath.Join(c.CNIConfDir, "10-flannel.conflist"))
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 3 || conf.Plugins[0]["type"] != "flannel" || conf.Plugins[0]["subnetFile"] != c.SubnetFile() {
		t.Errorf("conflist %s", b)
	}
	if conf.Plugins[0]["ipamDataDir"] != filepath.Join(c.CNIDataDir, "networks") {
		t.Errorf("host-local state is not kept under the data dir: %s", b)
	}
}
