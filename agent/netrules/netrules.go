// Package netrules reads the node's iptables rules for the checks that keep
// ours and flannel's in place: one iptables run lists a whole table, where
// a check per chain or per rule costs a run each (~10 ms of CPU with the
// nf_tables backend, which loads the ruleset every time).
package netrules

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// List returns the IPv4 table's rules as `iptables -S` prints them, a
// line each ("-P FORWARD ACCEPT", "-N CHAIN", "-A CHAIN …").
func List(ctx context.Context, table string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "iptables", "-w", "5", "-t", table, "-S").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("iptables -t %s -S: %w: %s", table, err, strings.TrimSpace(string(exit.Stderr)))
		}
		return nil, fmt.Errorf("iptables -t %s -S: %w", table, err)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n"), nil
}

// Rules returns the rules of chain in lines, in order ("-A chain …").
func Rules(lines []string, chain string) []string {
	var rules []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			rules = append(rules, l)
		}
	}
	return rules
}

// Restore applies payload (iptables-restore input: "*table", chain
// declarations, "-A" lines, "COMMIT") to the IPv4 tables without flushing
// the rest of them: each table's lines go in as one transaction.
func Restore(ctx context.Context, payload string) error {
	cmd := exec.CommandContext(ctx, "iptables-restore", "-w", "5", "--noflush")
	cmd.Stdin = strings.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
