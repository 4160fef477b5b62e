//go:build !linux

package containers

import "errors"

// netnsInode needs Linux network namespaces.
func netnsInode(string) (uint64, error) {
	return 0, errors.New("stat netns: network namespaces need Linux")
}
