package kubelet

import (
	"slices"
	"strings"
	"testing"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func render(t *testing.T, c Config) kubeletv1beta1.KubeletConfiguration {
	t.Helper()
	b, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &kc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return kc
}

func TestRenderFollowsTheHost(t *testing.T) {
	cases := []struct {
		name       string
		host       Host
		driver     string
		failV1     *bool
		oomScoreAd *int32
	}{
		{"cgroup v1, no CAP_SYS_RESOURCE, not systemd", Host{CgroupV1: true}, "cgroupfs", ptrBool(false), ptrInt(0)},
		{"cgroup v2 with systemd and all capabilities", Host{SystemdIsInit: true, CanLowerOOMAdj: true}, "systemd", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kc := render(t, Config{Host: c.host, ClusterDNS: "10.43.0.10", Taints: []string{"dedicated=edge:NoSchedule"}})
			if kc.CgroupDriver != c.driver {
				t.Errorf("cgroupDriver %q, want %q", kc.CgroupDriver, c.driver)
			}
			if (kc.FailCgroupV1 == nil) != (c.failV1 == nil) || kc.FailCgroupV1 != nil && *kc.FailCgroupV1 != *c.failV1 {
				t.Errorf("failCgroupV1 %v", kc.FailCgroupV1)
			}
			if (kc.OOMScoreAdj == nil) != (c.oomScoreAd == nil) || kc.OOMScoreAdj != nil && *kc.OOMScoreAdj != *c.oomScoreAd {
				t.Errorf("oomScoreAdj %v", kc.OOMScoreAdj)
			}
			if kc.NodeLeaseDurationSeconds != NodeLeaseDurationSeconds {
				t.Errorf("nodeLeaseDurationSeconds %d, want %d", kc.NodeLeaseDurationSeconds, NodeLeaseDurationSeconds)
			}
			if *kc.Authentication.Anonymous.Enabled || kc.Authorization.Mode != "Webhook" || kc.ReadOnlyPort != 0 {
				t.Error("kubelet API not locked down")
			}
			if len(kc.RegisterWithTaints) != 1 || kc.RegisterWithTaints[0].Key != "dedicated" || kc.RegisterWithTaints[0].Effect != "NoSchedule" {
				t.Errorf("taints %+v", kc.RegisterWithTaints)
			}
		})
	}
}

func TestArgsTakeUserOverrides(t *testing.T) {
	c := Config{ConfigPath: "/c.yaml", NodeName: "n1", NodeIP: "10.0.0.1", NodeLabels: []string{"a=b", "c=d"}, ExtraArgs: []string{"node-ip=10.0.0.9", "v=2"}}
	args := strings.Join(c.Args(), " ")
	for _, want := range []string{"--config=/c.yaml", "--node-ip=10.0.0.9", "--v=2", "--node-labels=a=b,c=d", "--hostname-override=n1"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %s: %s", want, args)
		}
	}
	if strings.Contains(args, "10.0.0.1") {
		t.Errorf("user override not applied: %s", args)
	}
}

func TestHousekeepingIntervalDefault(t *testing.T) {
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "--housekeeping-interval=30s"},
		{[]string{"housekeeping-interval=10s"}, "--housekeeping-interval=10s"},
	} {
		args := (&Config{ExtraArgs: tc.extra}).Args()
		if !slices.Contains(args, tc.want) {
			t.Errorf("extra %v: args lack %s: %v", tc.extra, tc.want, args)
		}
	}
}

func ptrBool(b bool) *bool  { return &b }
func ptrInt(i int32) *int32 { return &i }

func TestMaxOpenFiles(t *testing.T) {
	for hard, want := range map[uint64]int64{20000: 20000, 0: 1000000, 1 << 63: 1000000, 1048576: 1000000} {
		if got := maxOpenFiles(hard); got != want {
			t.Errorf("maxOpenFiles(%d) = %d, want %d", hard, got, want)
		}
	}
}
