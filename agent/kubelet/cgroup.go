package kubelet

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnsureCgroup creates the cgroup root (e.g. "/cluster-1a2b3c") in every
// mounted cgroup hierarchy: the kubelet refuses a cgroupRoot that does not
// exist. "/" exists already.
func EnsureCgroup(root string) error {
	if root == "" || root == "/" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("cgroup root %s: %w", root, err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		mountPoint, fsType, options, ok := parseMountInfo(s.Text())
		if !ok || (fsType != "cgroup" && fsType != "cgroup2") {
			continue
		}
		dir := filepath.Join(mountPoint, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root %s: %w", root, err)
		}
		if fsType == "cgroup" && strings.Contains(","+options+",", ",cpuset,") {
			// A new v1 cpuset cgroup has no CPUs or memory nodes: nothing
			// could run in it until they are copied from its parent.
			for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, _ := os.ReadFile(filepath.Join(dir, file)); len(bytes.TrimSpace(cur)) > 0 {
					continue
				}
				parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), file))
				if err != nil {
					return fmt.Errorf("cgroup root %s: %w", root, err)
				}
				if err := os.WriteFile(filepath.Join(dir, file), parent, 0o644); err != nil {
					return fmt.Errorf("cgroup root %s: %w", root, err)
				}
			}
		}
	}
	return nil
}

// parseMountInfo returns a /proc/self/mountinfo line's mount point, file
// system type and super options.
func parseMountInfo(line string) (mountPoint, fsType, superOptions string, ok bool) {
	pre, post, found := strings.Cut(line, " - ")
	fields, rest := strings.Fields(pre), strings.Fields(post)
	if !found || len(fields) < 5 || len(rest) < 3 {
		return "", "", "", false
	}
	return fields[4], rest[0], rest[2], true
}
