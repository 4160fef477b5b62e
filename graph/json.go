package graph

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes g as indented JSON in the stable form documented on
// Graph, followed by a newline. Errors come from w.
func WriteJSON(w io.Writer, g *Graph) error {
	c := *g
	if c.Nodes == nil {
		c.Nodes = []Node{}
	}
	if c.Edges == nil {
		c.Edges = []Link{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("write graph json: %w", err)
	}
	return nil
}
