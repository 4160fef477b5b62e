package containerd

import "errors"

var (
	// ErrUnreachable is wrapped by the errors of Containers, Watch and
	// Version when containerd cannot be reached: no socket at the path,
	// nobody listening, no permission to open it, or the connection lost.
	ErrUnreachable = errors.New("containerd unreachable")
	// ErrBadNamespace is wrapped by New's error when the namespace is not
	// a valid containerd identifier.
	ErrBadNamespace = errors.New("bad containerd namespace")
)
