package main

import "testing"

func TestNamesOutsideTheBaseAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"create", "../etc"}, {"delete", ".."}, {"delete", "a/b"}, {"delete", ""}, {"chmod", "x"}, {"create"},
	} {
		if err := run(args); err == nil {
			t.Errorf("run(%q) was accepted", args)
		}
	}
}
