package graph

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// GraphML namespace and schema.
const (
	graphMLNamespace = "http://graphml.graphdrawing.org/xmlns"
	graphMLSchema    = "http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd"
)

// graphMLKeys declares every attribute WriteGraphML writes: id, for,
// attr.name, attr.type. Node labels are one string "k=v,k=v" sorted by key;
// times are RFC 3339 strings; counters are longs.
var graphMLKeys = []gmlKey{
	{"kind", "node", "kind", "string"},
	{"namespace", "node", "namespace", "string"},
	{"workload", "node", "workload", "string"},
	{"labels", "node", "labels", "string"},
	{"name", "node", "name", "string"},
	{"addr", "node", "addr", "string"},
	{"label", "edge", "label", "string"},
	{"protocol", "edge", "protocol", "string"},
	{"port", "edge", "port", "int"},
	{"flows", "edge", "flows", "long"},
	{"packetsOut", "edge", "packetsOut", "long"},
	{"bytesOut", "edge", "bytesOut", "long"},
	{"packetsIn", "edge", "packetsIn", "long"},
	{"bytesIn", "edge", "bytesIn", "long"},
	{"firstSeen", "edge", "firstSeen", "string"},
	{"lastSeen", "edge", "lastSeen", "string"},
	{"observed", "edge", "observed", "long"},
	{"allowed", "edge", "allowed", "long"},
	{"auditDenied", "edge", "auditDenied", "long"},
	{"denied", "edge", "denied", "long"},
	{"verdict", "edge", "verdict", "string"},
	{"tier", "edge", "tier", "string"},
	{"policy", "edge", "policy", "string"},
	{"priority", "edge", "priority", "int"},
	{"rule", "edge", "rule", "string"},
	{"action", "edge", "action", "string"},
	{"audited", "edge", "audited", "boolean"},
	{"generatedAt", "graph", "generatedAt", "string"},
}

type gmlDoc struct {
	XMLName        xml.Name `xml:"graphml"`
	XMLNS          string   `xml:"xmlns,attr"`
	XSI            string   `xml:"xmlns:xsi,attr"`
	SchemaLocation string   `xml:"xsi:schemaLocation,attr"`
	Keys           []gmlKey `xml:"key"`
	Graph          gmlGraph `xml:"graph"`
}

type gmlKey struct {
	ID   string `xml:"id,attr"`
	For  string `xml:"for,attr"`
	Name string `xml:"attr.name,attr"`
	Type string `xml:"attr.type,attr"`
}

type gmlGraph struct {
	ID          string    `xml:"id,attr"`
	EdgeDefault string    `xml:"edgedefault,attr"`
	Data        []gmlData `xml:"data"`
	Nodes       []gmlNode `xml:"node"`
	Edges       []gmlEdge `xml:"edge"`
}

type gmlNode struct {
	ID   string    `xml:"id,attr"`
	Data []gmlData `xml:"data"`
}

type gmlEdge struct {
	ID     string    `xml:"id,attr"`
	Source string    `xml:"source,attr"`
	Target string    `xml:"target,attr"`
	Data   []gmlData `xml:"data"`
}

type gmlData struct {
	Key   string `xml:"key,attr"`
	Value string `xml:",chardata"`
}

// WriteGraphML writes g as GraphML 1.0 (directed), with a <key>
// declaration for every attribute. Node IDs are the graph's node IDs; edge
// IDs are "e0", "e1", ... in the graph's edge order. Every name is
// XML-escaped, and characters XML cannot hold are written as U+FFFD.
// Errors come from w.
func WriteGraphML(w io.Writer, g *Graph) error {
	doc := gmlDoc{
		XMLNS:          graphMLNamespace,
		XSI:            "http://www.w3.org/2001/XMLSchema-instance",
		SchemaLocation: graphMLSchema,
		Keys:           graphMLKeys,
		Graph:          gmlGraph{ID: "nanoseg", EdgeDefault: "directed"},
	}
	if !g.GeneratedAt.IsZero() {
		doc.Graph.Data = append(doc.Graph.Data, gmlData{"generatedAt", g.GeneratedAt.UTC().Format(time.RFC3339)})
	}
	for _, n := range g.Nodes {
		d := []gmlData{{"kind", n.Kind}}
		if n.External() {
			d = appendData(d, "name", n.Name)
			d = appendData(d, "addr", n.Addr)
		} else {
			d = append(d, gmlData{"namespace", n.Namespace}, gmlData{"workload", n.Workload})
			var ls []string
			for _, k := range sortedKeys(n.Labels) {
				ls = append(ls, k+"="+n.Labels[k])
			}
			d = appendData(d, "labels", strings.Join(ls, ","))
		}
		doc.Graph.Nodes = append(doc.Graph.Nodes, gmlNode{ID: n.ID, Data: d})
	}
	for i, e := range g.Edges {
		d := []gmlData{
			{"label", e.Text()},
			{"protocol", string(e.Protocol)},
			{"port", strconv.Itoa(int(e.Port))},
			{"flows", u64(e.Flows)},
			{"packetsOut", u64(e.PacketsOut)},
			{"bytesOut", u64(e.BytesOut)},
			{"packetsIn", u64(e.PacketsIn)},
			{"bytesIn", u64(e.BytesIn)},
		}
		if !e.FirstSeen.IsZero() {
			d = append(d, gmlData{"firstSeen", e.FirstSeen.UTC().Format(time.RFC3339)})
		}
		if !e.LastSeen.IsZero() {
			d = append(d, gmlData{"lastSeen", e.LastSeen.UTC().Format(time.RFC3339)})
		}
		d = append(d,
			gmlData{"observed", u64(e.Verdicts.Observed)},
			gmlData{"allowed", u64(e.Verdicts.Allowed)},
			gmlData{"auditDenied", u64(e.Verdicts.AuditDenied)},
			gmlData{"denied", u64(e.Verdicts.Denied)},
			gmlData{"verdict", string(e.Worst())},
		)
		if c := e.DecidedBy; c != nil {
			rule := c.Rule
			if c.Name != "" {
				rule += " " + c.Name
			}
			d = append(d, gmlData{"tier", c.Tier}, gmlData{"policy", c.Policy}, gmlData{"priority", strconv.Itoa(int(c.Priority))},
				gmlData{"rule", rule}, gmlData{"action", c.Action})
			if c.Audited {
				d = append(d, gmlData{"audited", "true"})
			}
		}
		doc.Graph.Edges = append(doc.Graph.Edges, gmlEdge{ID: "e" + strconv.Itoa(i), Source: e.Source, Target: e.Destination, Data: d})
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write graph graphml: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write graph graphml: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write graph graphml: %w", err)
	}
	return nil
}

func appendData(d []gmlData, key, value string) []gmlData {
	if value == "" {
		return d
	}
	return append(d, gmlData{key, value})
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }
