package netrules

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// genEnv makes the test binary, started again in a network namespace of its
// own, change that namespace's rules and print the generation after each.
const genEnv = "CLUSTER_TEST_NETRULES_GENERATION"

func TestMain(m *testing.M) {
	if os.Getenv(genEnv) != "" {
		if err := printGenerations(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// genSteps are what printGenerations does, in order, and whether the
// ruleset's generation must move with it.
var genSteps = []struct {
	name  string
	cmd   []string
	moves bool
}{
	{"list the filter table", []string{"iptables", "-w", "5", "-t", "filter", "-S"}, false},
	{"add a chain", []string{"iptables", "-w", "5", "-t", "filter", "-N", "NETRULES-TEST"}, true},
	{"list it again", []string{"iptables", "-w", "5", "-t", "filter", "-S"}, false},
	{"add a rule", []string{"iptables", "-w", "5", "-t", "filter", "-A", "NETRULES-TEST", "-j", "RETURN"}, true},
	{"check the rule", []string{"iptables", "-w", "5", "-t", "filter", "-C", "NETRULES-TEST", "-j", "RETURN"}, false},
	{"delete the rule", []string{"iptables", "-w", "5", "-t", "filter", "-D", "NETRULES-TEST", "-j", "RETURN"}, true},
	{"an nft table", []string{"nft", "add", "table", "ip", "netrules-test"}, true},
}

// printGenerations runs in the namespace: the generation before the steps,
// then one after each step, a line each.
func printGenerations() error {
	g, err := Generation()
	if err != nil {
		return err
	}
	fmt.Println(g)
	for _, s := range genSteps {
		if out, err := exec.Command(s.cmd[0], s.cmd[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", s.name, err, out)
		}
		if g, err = Generation(); err != nil {
			return err
		}
		fmt.Println(g)
	}
	return nil
}

func TestGenerationFollowsRuleChanges(t *testing.T) {
	for _, tool := range []string{"unshare", "iptables", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (scripts/deps installs it)", tool, err)
		}
	}
	if !NFTablesBackend(t.Context()) {
		t.Fatal("iptables is not iptables-nft here: the generation does not see its rules (scripts/deps installs Debian's iptables, whose default is nft)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--net", self, "-test.run=^$")
	cmd.Env = append(os.Environ(), genEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("in a network namespace: %v: %s", err, exit.Stderr)
		}
		t.Fatal(err)
	}
	gens := strings.Fields(string(out))
	if len(gens) != len(genSteps)+1 {
		t.Fatalf("generations: %q, want %d", gens, len(genSteps)+1)
	}
	for i, s := range genSteps {
		if moved := gens[i+1] != gens[i]; moved != s.moves {
			t.Errorf("%s: generation %s -> %s, moved %v, want %v", s.name, gens[i], gens[i+1], moved, s.moves)
		}
	}
}

func TestGenerationsChanged(t *testing.T) {
	errRead := errors.New("netlink: operation not permitted")
	tests := []struct {
		name   string
		legacy bool // NewGenerations(false): nil
		// reads are what the generation reads return in turn; checked
		// says after which reads the caller's check succeeded.
		reads   []uint32
		fail    []bool
		checked []bool
		want    []bool // Changed's answer at each read
	}{
		{
			name:   "nil (iptables-legacy) always lists",
			legacy: true, reads: []uint32{1, 1, 1}, checked: []bool{true, true, true},
			want: []bool{true, true, true},
		},
		{
			name:  "unchanged since a check: skip",
			reads: []uint32{7, 7, 7, 8, 8}, checked: []bool{true, false, false, true, false},
			want: []bool{true, false, false, true, false},
		},
		{
			name:  "a failed check is not a check",
			reads: []uint32{7, 7, 7}, checked: []bool{false, true, false},
			want: []bool{true, true, false},
		},
		{
			name:  "an unreadable generation lists, and does not count as checked",
			reads: []uint32{7, 0, 7, 7}, fail: []bool{false, true, false, false}, checked: []bool{true, true, false, false},
			want: []bool{true, true, true, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			g := NewGenerations(false)
			if !tc.legacy {
				g = GenerationsFrom(func() (uint32, error) {
					if tc.fail != nil && tc.fail[i] {
						return 0, errRead
					}
					return tc.reads[i], nil
				})
			}
			for i = range tc.reads {
				gen, changed := g.Changed()
				if changed != tc.want[i] {
					t.Fatalf("read %d (%d): changed %v, want %v", i, tc.reads[i], changed, tc.want[i])
				}
				if tc.checked[i] {
					g.Checked(gen)
				}
			}
		})
	}
}
