package graph

import "errors"

// ErrUnknownVerdict is wrapped by ParseVerdictFilter for a name that is not one
// of observed, allow, audit-deny or deny.
var ErrUnknownVerdict = errors.New("unknown verdict")

// ErrUnknownFormat is returned by Write for a format that is not one of
// Formats.
var ErrUnknownFormat = errors.New("unknown format")

// ErrBadEdge is returned by DecodeEdges for a JSON value that decodes but
// is not an edge.
var ErrBadEdge = errors.New("bad edge")
