package containerd

import "errors"

var (
	// ErrUnreachable is wrapped by New's errors when containerd cannot be
	// reached: no socket at the path, no permission to open it, or no
	// answer.
	ErrUnreachable = errors.New("containerd unreachable")
	// ErrBadNamespace is wrapped by New's error when the namespace is not
	// a valid containerd identifier.
	ErrBadNamespace = errors.New("bad containerd namespace")
)
