package graph

import (
	"bytes"
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// hostileEdges carry names that try to break out of every format.
func hostileEdges() []model.Edge {
	evil := model.Peer{Namespace: `ns"<script>alert(1)</script>`, Workload: "w\"];\n x -> y [label=\"pwn", Labels: map[string]string{"a&b": `"><img src=x onerror=alert(1)>`}}
	quote := model.Peer{Namespace: "q", Workload: `back\slash\`}
	mermaid := model.Peer{Namespace: "m", Workload: "a]) --> evil[(\"x\") %% click n0 call alert() `md` #quot; |x|"}
	ext := model.Peer{External: true, Name: "</svg><script>alert(2)</script>\r\n\x00\x1b"}
	return []model.Edge{
		{Source: evil, Destination: quote, Protocol: "TCP", Port: 1, Traffic: model.Traffic{Flows: 1}},
		{Source: quote, Destination: ext, Protocol: model.ProtocolUDP, Port: 2, Traffic: model.Traffic{Flows: 2, Verdicts: model.VerdictCounts{Denied: 2}}},
		{Source: mermaid, Destination: evil, Protocol: model.ProtocolTCP, Port: 3, Traffic: model.Traffic{Flows: 3, Verdicts: model.VerdictCounts{AuditDenied: 1}}},
	}
}

func TestEscapingHTML(t *testing.T) {
	g := Build(hostileEdges(), Filter{})
	out := render(t, FormatHTML, g)
	for _, bad := range []string{"<script>alert", "<img", "</svg><script>", "onerror=alert(1)>"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("HTML contains unescaped %q", bad)
		}
	}
	// The names reach the page as data, unchanged (the page sets them as
	// text, never as markup).
	d := htmlData(t, out)
	var ids []string
	for _, n := range d.Nodes {
		ids = append(ids, n.ID)
	}
	for _, n := range g.Nodes {
		if !slices.Contains(ids, n.ID) {
			t.Errorf("node %q is not in the page's data: %q", n.ID, ids)
		}
	}
}

func TestEscapingDOT(t *testing.T) {
	g := Build(hostileEdges(), Filter{})
	out := string(render(t, FormatDOT, g))
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "x -> y") && !strings.Contains(l, `\"`) {
			t.Errorf("injected edge: %q", l)
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x00") {
		t.Error("control characters in DOT")
	}
	if !strings.Contains(out, `"q/back\\slash\\ "`) {
		t.Errorf("trailing backslash not escaped:\n%s", out)
	}
}

func TestEscapingMermaid(t *testing.T) {
	g := Build(hostileEdges(), Filter{})
	out := string(render(t, FormatMermaid, g))
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 0 {
			continue
		}
		// Outside the one quoted string per line, only generated IDs and
		// fixed syntax remain.
		if strings.Count(l, `"`) != 0 && strings.Count(l, `"`) != 2 && strings.Count(l, `"`) != 4 {
			t.Errorf("line %d has %d quotes: %q", i, strings.Count(l, `"`), l)
		}
		for _, bad := range []string{"<", ">", "`", "%%", "click"} {
			outside := l
			for strings.Count(outside, `"`) >= 2 {
				a := strings.Index(outside, `"`)
				b := strings.Index(outside[a+1:], `"`) + a + 1
				outside = outside[:a] + outside[b+1:]
			}
			if strings.Contains(outside, bad) && !strings.HasPrefix(strings.TrimSpace(l), "n") {
				t.Errorf("line %d: %q outside quotes: %q", i, bad, l)
			}
		}
		if strings.ContainsAny(l, "<`\r") {
			t.Errorf("line %d: raw markup character: %q", i, l)
		}
	}
}

func TestEscapingGraphML(t *testing.T) {
	g := Build(hostileEdges(), Filter{})
	out := render(t, FormatGraphML, g)
	dec := xml.NewDecoder(bytes.NewReader(out))
	elems := map[string]int{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("graphml is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems[se.Name.Local]++
		}
	}
	if elems["script"] != 0 || elems["img"] != 0 || elems["svg"] != 0 {
		t.Errorf("injected elements: %v", elems)
	}
	golden(t, "hostile.graphml", out)
}

func TestEscapingGolden(t *testing.T) {
	g := Build(hostileEdges(), Filter{})
	golden(t, "hostile.dot", render(t, FormatDOT, g))
	golden(t, "hostile.mmd", render(t, FormatMermaid, g))
	golden(t, "hostile.html", htmlSkeleton(t, render(t, FormatHTML, g)))
}
