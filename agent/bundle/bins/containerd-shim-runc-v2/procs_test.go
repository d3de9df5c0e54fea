package main

import "testing"

func TestShimProcessors(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{
		{"", defaultShimProcessors},
		{"off", 0}, // upstream's GOMAXPROCS=4 stays
		{"2", 2},
		{"0", defaultShimProcessors}, // refused by the server at its start; cannot arrive
		{"many", defaultShimProcessors},
	} {
		t.Setenv(envShimProcessors, tc.env)
		if got := shimProcessors(); got != tc.want {
			t.Errorf("%s=%q: %d processors; want %d", envShimProcessors, tc.env, got, tc.want)
		}
	}
}
