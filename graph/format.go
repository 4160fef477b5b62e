package graph

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Format names an output format.
type Format string

// Output formats.
const (
	FormatJSON    Format = "json"
	FormatDOT     Format = "dot"
	FormatGraphML Format = "graphml"
	FormatMermaid Format = "mermaid"
	FormatHTML    Format = "html"
)

// Formats lists every format Write knows, in the order of the docs.
var Formats = []Format{FormatJSON, FormatDOT, FormatGraphML, FormatMermaid, FormatHTML}

// Ext is the usual file name extension of f, without the dot: "json",
// "dot", "graphml", "mmd", "html".
func (f Format) Ext() string {
	if f == FormatMermaid {
		return "mmd"
	}
	return string(f)
}

// FormatOf returns the format of a file name by its extension (".json",
// ".dot"/".gv", ".graphml", ".mmd"/".mermaid", ".html"/".htm"), and false
// for any other.
func FormatOf(name string) (Format, bool) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return FormatJSON, true
	case ".dot", ".gv":
		return FormatDOT, true
	case ".graphml":
		return FormatGraphML, true
	case ".mmd", ".mermaid":
		return FormatMermaid, true
	case ".html", ".htm":
		return FormatHTML, true
	}
	return "", false
}

// Write writes g to w in format f. An unknown format gives an error
// wrapping ErrUnknownFormat; other errors come from w.
func Write(w io.Writer, f Format, g *Graph) error {
	switch f {
	case FormatJSON:
		return WriteJSON(w, g)
	case FormatDOT:
		return WriteDOT(w, g)
	case FormatGraphML:
		return WriteGraphML(w, g)
	case FormatMermaid:
		return WriteMermaid(w, g)
	case FormatHTML:
		return WriteHTML(w, g)
	}
	return fmt.Errorf("write graph %q (want json, dot, graphml, mermaid or html): %w", string(f), ErrUnknownFormat)
}
