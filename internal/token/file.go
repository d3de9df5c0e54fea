package token

import (
	"fmt"
	"os"
	"strings"
)

// ReadFile reads a --token-file and returns the token in it.
func ReadFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return s, nil
}
