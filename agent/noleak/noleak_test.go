package noleak

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The nftables table must be what nft accepts; checked in a network
// namespace of its own so the host's rules stay untouched.
func TestNFTRulesParse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to check rules with nft in a new network namespace (CI runs as root)")
	}
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(nftRules("10.43.0.0/16")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Applied twice: the add+delete preamble makes it idempotent.
	out, err := exec.Command("unshare", "--net", "sh", "-c", "nft -f "+f+" && nft -f "+f+" && nft list table ip "+Table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	for _, want := range []string{"hook forward priority filter - 5", "hook output priority filter - 5", "ip daddr 10.43.0.0/16 meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset", "reject"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
