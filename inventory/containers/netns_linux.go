//go:build linux

package containers

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// netnsInode returns the nsfs inode of the network namespace at path (a
// bind mount under /run/netns or /proc/<pid>/ns/net): a namespace made
// anew under the same path has another one. Source: stat(2), namespaces(7).
func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return st.Ino, nil
}
