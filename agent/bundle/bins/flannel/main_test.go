package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestDelegateConfFromSubnetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	os.WriteFile(path, []byte("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"), 0o644)
	env, err := readSubnetEnv(path)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := loadConf([]byte(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","ipamDataDir":"/d/networks","delegate":{"hairpinMode":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := delegateConf(conf, env)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(b, &d)
	ipam := d["ipam"].(map[string]any)
	ranges, _ := json.Marshal(ipam["ranges"])
	routes, _ := json.Marshal(ipam["routes"])
	checks := map[string]bool{
		"type bridge":                    d["type"] == "bridge",
		"no double masquerade":           d["ipMasq"] == false,
		"mtu from the lease":             d["mtu"] == float64(1450),
		"delegate options kept":          d["hairpinMode"] == true,
		"range is the node subnet":       string(ranges) == `[[{"subnet":"10.42.3.0/24"}]]`,
		"route to the cluster network":   string(routes) == `[{"dst":"10.42.0.0/16"}]`,
		"host-local state under datadir": ipam["dataDir"] == "/d/networks",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: %s", what, b)
		}
	}
}

func TestMissingSubnetFileSaysWhy(t *testing.T) {
	_, err := readSubnetEnv(filepath.Join(t.TempDir(), "subnet.env"))
	if err == nil {
		t.Fatal("no error")
	}
}
