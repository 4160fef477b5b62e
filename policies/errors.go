package policies

import "errors"

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound: a referenced namespace, pod or policy does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object of that name exists already.
	ErrExists = errors.New("already exists")
	// ErrInvalid: an object failed validation; the error lists every problem
	// with its field path.
	ErrInvalid = errors.New("invalid")
	// ErrUnknownField: a document holds a field its type does not have.
	ErrUnknownField = errors.New("unknown field")
)

func joinErrors(errs []error) error { return errors.Join(errs...) }
