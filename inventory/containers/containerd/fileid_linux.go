//go:build linux

package containerd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fileID names the file at path by device and inode ("dev:ino"), so two
// paths of one network namespace compare equal; ok is false when it
// cannot be read (a stopped task's /proc path, no permission).
func fileID(path string) (id string, ok bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", false
	}
	return fmt.Sprintf("ino:%d:%d", st.Dev, st.Ino), true
}
