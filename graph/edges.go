package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nanoseg/nanoseg/model"
)

// DecodeEdges decodes a sequence of JSON values, each an edge, an array of
// edges, or an object with an "edges" array (a window printed by
// `nanoseg observe --edges -o json`). So a JSON array, JSON lines and
// concatenated JSON are all accepted; unknown fields are ignored. A value
// that decodes but is no edge (a peer with neither namespace and workload
// nor an external name or address, or no protocol) is an error wrapping
// ErrBadEdge. Every error starts with the line (1-based) where the bad
// value starts or where the syntax error is: "line 3: ...".
func DecodeEdges(data []byte) ([]model.Edge, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var edges []model.Edge
	for {
		// Where the next value starts, past the whitespace before it.
		start := dec.InputOffset()
		valueStart := start + int64(len(data[start:])-len(bytes.TrimLeft(data[start:], " \t\r\n")))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return edges, nil
		}
		if err != nil {
			off := valueStart
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = se.Offset
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("value starting here is not terminated: %w", err)
			}
			return nil, fmt.Errorf("line %d: %w", lineAt(data, off), err)
		}
		got, err := decodeEdgeValue(raw)
		if err != nil {
			var te *json.UnmarshalTypeError
			off := valueStart
			if errors.As(err, &te) {
				off += te.Offset
			}
			return nil, fmt.Errorf("line %d: %w", lineAt(data, off), err)
		}
		for i, e := range got {
			if err := checkEdge(e); err != nil {
				if len(got) > 1 {
					err = fmt.Errorf("edge %d: %w", i+1, err)
				}
				return nil, fmt.Errorf("line %d: %w", lineAt(data, valueStart), err)
			}
		}
		edges = append(edges, got...)
	}
}

func decodeEdgeValue(raw json.RawMessage) ([]model.Edge, error) {
	switch raw[0] {
	case '[':
		var es []model.Edge
		if err := json.Unmarshal(raw, &es); err != nil {
			return nil, fmt.Errorf("decode edge array: %w", err)
		}
		return es, nil
	case '{':
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("decode edge: %w", err)
		}
		if list, ok := probe["edges"]; ok {
			if _, isEdge := probe["source"]; !isEdge {
				var es []model.Edge
				if err := json.Unmarshal(list, &es); err != nil {
					return nil, fmt.Errorf("decode edges of window: %w", err)
				}
				return es, nil
			}
		}
		var e model.Edge
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("decode edge: %w", err)
		}
		return []model.Edge{e}, nil
	}
	return nil, fmt.Errorf("decode edge: want an object or an array, got %.20s", raw)
}

// checkEdge rejects values that decoded but are no edge (e.g. a typo in
// every field name).
func checkEdge(e model.Edge) error {
	for _, end := range []struct {
		name string
		p    model.Peer
	}{{"source", e.Source}, {"destination", e.Destination}} {
		if end.p.External && end.p.Name == "" && !end.p.Addr.IsValid() {
			return fmt.Errorf("check edge: external %s has neither name nor addr: %w", end.name, ErrBadEdge)
		}
		if !end.p.External && (end.p.Namespace == "" || end.p.Workload == "") {
			return fmt.Errorf("check edge: %s needs namespace and workload, or external with name or addr: %w", end.name, ErrBadEdge)
		}
	}
	if e.Protocol == "" {
		return fmt.Errorf("check edge: protocol is empty: %w", ErrBadEdge)
	}
	return nil
}

// lineAt returns the 1-based line of byte offset off in data.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte("\n")) + 1
}
