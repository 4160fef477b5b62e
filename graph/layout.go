package graph

// A small, deterministic layered layout (after Sugiyama et al.) for the
// HTML page: break cycles by a depth-first search in node order, put every
// node in the column of its longest path from a source (sources that only
// feed later columns move next to their first target), add a virtual point
// per column that a long edge crosses, order each column by a few
// barycentre sweeps to reduce crossings, then stack columns vertically and
// route each (source, destination) pair as one smooth path through its
// virtual points. Only integers and sorted slices decide the result, so the
// same graph always gives the same picture.

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Layout sizes, in SVG user units (pixels at 100% zoom).
const (
	nodeH      = 46.0
	virtH      = 18.0
	rowGap     = 22.0
	colGap     = 190.0
	marginX    = 24.0
	marginY    = 24.0
	minNodeW   = 130.0
	maxNodeW   = 230.0
	titleChar  = 7.6 // approximate width of a 13px bold character
	labelChar  = 6.3 // approximate width of an 11px character
	labelLineH = 14.0
	sweeps     = 6
	// maxLabelLines is the most lines an edge label has.
	maxLabelLines = 3
)

// pair is every edge from one node to another, drawn as one path.
type pair struct {
	src, dst int   // node indexes
	edges    []int // indexes into Graph.Edges
	reversed bool  // drawn against the layering (a cycle was broken here)
	chain    []int // layout items from the lower column to the higher one
}

// item is one slot in a column: a node or a virtual point of a long edge.
type item struct {
	node   int // node index, or -1 for a virtual point
	col    int
	order  float64
	y, h   float64
	pairID int // pair of a virtual point
}

type point struct{ x, y float64 }

type rect struct{ x, y, w, h float64 }

func (r rect) overlaps(o rect) bool {
	return r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h
}

// placedNode is a node's box.
type placedNode struct {
	rect
	col int
}

// placedPair is a pair's route and label box.
type placedPair struct {
	pair
	points []point // from source to destination
	label  rect
	lines  [][]span // label lines, each cut into parts (see pairLabel)
	self   bool
}

// layout is the computed picture.
type layout struct {
	width, height float64
	nodeW         float64
	nodes         []placedNode
	pairs         []placedPair
}

// pairLabel is the label of a pair of nodes: for each edge a line
// "TCP/5432 · 616 flows" and, when any of its flows was denied or
// audit-denied, a second line "614 allowed, 2 denied", and when any
// connection failed a line "3 failed"; at most
// maxLabelLines lines, the edges that do not fit summed up as "+2 more ·
// 40 flows" (the tooltip and the table list every edge).
func pairLabel(g *Graph, edges []int) [][]span {
	block := func(head string, flows, a, au, d, failed uint64) [][]span {
		out := [][]span{{headSpan(head, flows)}}
		if split := splitSpans(a, au, d); split != nil {
			out = append(out, split)
		}
		if failed > 0 {
			out = append(out, []span{{text: failedText(failed)}})
		}
		return out
	}
	summary := func(rest []int, first bool) [][]span {
		if len(rest) == 0 {
			return nil
		}
		var flows, a, au, d, failed uint64
		for _, ei := range rest {
			ea, eau, ed := g.Edges[ei].Split()
			flows, a, au, d, failed = flows+g.Edges[ei].Flows, a+ea, au+eau, d+ed, failed+g.Edges[ei].Failed
		}
		head := fmt.Sprintf("+%d more", len(rest))
		if first {
			head = fmt.Sprintf("%d services", len(rest))
		}
		return block(head, flows, a, au, d, failed)
	}
	var lines [][]span
	for i, ei := range edges {
		e := g.Edges[ei]
		a, au, d := e.Split()
		b := block(e.Service(), e.Flows, a, au, d, e.Failed)
		// Room for this edge and at least the summary of the rest, which
		// the previous step made sure fits.
		if len(lines)+len(b)+len(summary(edges[i+1:], false)) > maxLabelLines {
			return append(lines, summary(edges[i:], len(lines) == 0)...)
		}
		lines = append(lines, b...)
	}
	return lines
}

func textWidth(s string, per float64) float64 { return float64(utf8.RuneCountInString(s)) * per }

// truncate shortens s to at most n runes, ending with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 1)]) + "…"
}

func computeLayout(g *Graph) *layout {
	n := len(g.Nodes)
	idx := make(map[string]int, n)
	for i, nd := range g.Nodes {
		idx[nd.ID] = i
	}
	// Pairs, in edge order (edges are sorted by source, destination).
	var pairs []pair
	pairOf := map[[2]int]int{}
	for ei, e := range g.Edges {
		k := [2]int{idx[e.Source], idx[e.Destination]}
		pi, ok := pairOf[k]
		if !ok {
			pi = len(pairs)
			pairOf[k] = pi
			pairs = append(pairs, pair{src: k[0], dst: k[1]})
		}
		pairs[pi].edges = append(pairs[pi].edges, ei)
	}
	out := make([][]int, n) // pair indexes leaving each node (self-loops excluded)
	in := make([][]int, n)
	for pi, p := range pairs {
		if p.src == p.dst {
			continue
		}
		out[p.src] = append(out[p.src], pi)
		in[p.dst] = append(in[p.dst], pi)
	}

	// Break cycles: a DFS from nodes without incoming pairs first, then the
	// rest, in node order; a pair to a node on the stack is reversed.
	state := make([]int8, n) // 0 new, 1 on stack, 2 done
	var topo []int           // reverse postorder
	var visit func(v int)
	visit = func(v int) {
		state[v] = 1
		for _, pi := range out[v] {
			w := pairs[pi].dst
			switch state[w] {
			case 0:
				visit(w)
			case 1:
				pairs[pi].reversed = true
			}
		}
		state[v] = 2
		topo = append(topo, v)
	}
	for v := range n {
		if len(in[v]) == 0 && state[v] == 0 {
			visit(v)
		}
	}
	for v := range n {
		if state[v] == 0 {
			visit(v)
		}
	}
	slices.Reverse(topo)

	// Longest-path columns over the acyclic orientation.
	from := func(p pair) (int, int) {
		if p.reversed {
			return p.dst, p.src
		}
		return p.src, p.dst
	}
	col := make([]int, n)
	succ := make([][]int, n)
	pred := make([][]int, n)
	for _, p := range pairs {
		if p.src == p.dst {
			continue
		}
		u, v := from(p)
		succ[u] = append(succ[u], v)
		pred[v] = append(pred[v], u)
	}
	for _, u := range topo {
		for _, v := range succ[u] {
			col[v] = max(col[v], col[u]+1)
		}
	}
	// Pull sources to the column just before their nearest target.
	for _, u := range topo {
		if len(pred[u]) == 0 && len(succ[u]) > 0 {
			m := col[succ[u][0]]
			for _, v := range succ[u] {
				m = min(m, col[v])
			}
			col[u] = max(col[u], m-1)
		}
	}
	ncols := 0
	for _, c := range col {
		ncols = max(ncols, c+1)
	}

	// Columns of items: nodes, then virtual points of long pairs.
	var items []item
	columns := make([][]int, ncols)
	initial := func(i int) int { return i } // nodes are sorted: by ID, workloads grouped by namespace
	for v := range n {
		items = append(items, item{node: v, col: col[v], order: float64(initial(v)), h: nodeH, pairID: -1})
		columns[col[v]] = append(columns[col[v]], v)
	}
	for pi := range pairs {
		p := &pairs[pi]
		if p.src == p.dst {
			continue
		}
		u, v := from(*p)
		p.chain = append(p.chain, u)
		for c := col[u] + 1; c < col[v]; c++ {
			it := len(items)
			items = append(items, item{node: -1, col: c, order: float64(n + pi), h: virtH, pairID: pi})
			columns[c] = append(columns[c], it)
			p.chain = append(p.chain, it)
		}
		p.chain = append(p.chain, v)
	}
	// Neighbours of each item in the previous and next columns.
	left := make([][]int, len(items))
	right := make([][]int, len(items))
	for _, p := range pairs {
		for i := 1; i < len(p.chain); i++ {
			a, b := p.chain[i-1], p.chain[i]
			right[a] = append(right[a], b)
			left[b] = append(left[b], a)
		}
	}
	position := make([]float64, len(items))
	renumber := func() {
		for _, c := range columns {
			slices.SortStableFunc(c, func(a, b int) int {
				return cmp.Or(cmp.Compare(items[a].order, items[b].order), cmp.Compare(a, b))
			})
			for i, it := range c {
				position[it] = float64(i)
				items[it].order = float64(i)
			}
		}
	}
	renumber()
	bary := func(it int, nb [][]int) {
		if len(nb[it]) == 0 {
			return
		}
		s := 0.0
		for _, o := range nb[it] {
			s += position[o]
		}
		// Keep a little of the current order to break ties stably.
		items[it].order = s/float64(len(nb[it])) + position[it]*1e-3
	}
	for s := range sweeps {
		if s%2 == 0 {
			for c := 1; c < ncols; c++ {
				for _, it := range columns[c] {
					bary(it, left)
				}
				renumber()
			}
		} else {
			for c := ncols - 2; c >= 0; c-- {
				for _, it := range columns[c] {
					bary(it, right)
				}
				renumber()
			}
		}
	}

	// Sizes and coordinates, with more room between rows while labels
	// do not find a free spot.
	L, crowded := place(g, items, columns, pairs, in, out, col, rowGap)
	for gap := rowGap * 1.6; crowded > 0 && gap < rowGap*5; gap *= 1.6 {
		L, crowded = place(g, items, columns, pairs, in, out, col, gap)
	}
	return L
}

// place gives items and nodes their coordinates with gap between the rows
// of a column, routes the pairs and places their labels. It returns the
// layout and how many labels found no free spot.
func place(g *Graph, items []item, columns [][]int, pairs []pair, in, out [][]int, col []int, rowGap float64) (*layout, int) {
	n, ncols := len(g.Nodes), len(columns)
	crowded := 0
	nodeW := minNodeW
	for _, nd := range g.Nodes {
		pad := 28.0
		if nd.External() {
			pad += nodeH / 2 // the pill's round ends
		}
		nodeW = max(nodeW, min(maxNodeW, textWidth(cleanText(nd.Label()), titleChar)+pad))
	}
	heights := make([]float64, ncols)
	maxH := 0.0
	for c, col := range columns {
		for i, it := range col {
			if i > 0 {
				heights[c] += rowGap
			}
			heights[c] += items[it].h
		}
		maxH = max(maxH, heights[c])
	}
	for c, col := range columns {
		y := marginY + (maxH-heights[c])/2
		for _, it := range col {
			items[it].y = y
			y += items[it].h + rowGap
		}
	}
	colX := func(c int) float64 { return marginX + float64(c)*(nodeW+colGap) }
	L := &layout{nodeW: nodeW, nodes: make([]placedNode, n)}
	for v := range n {
		L.nodes[v] = placedNode{rect: rect{colX(col[v]), items[v].y, nodeW, nodeH}, col: col[v]}
	}
	L.width = colX(max(ncols-1, 0)) + nodeW + marginX
	L.height = maxH + 2*marginY

	// Attachment points: spread the paths that enter (left side) or leave
	// (right side) a node along its height, ordered by the other end.
	type attach struct {
		pair  int
		other float64
		index int // chain index of this node
	}
	lefts := make([][]attach, n)
	rights := make([][]attach, n)
	centerY := func(it int) float64 { return items[it].y + items[it].h/2 }
	for pi, p := range pairs {
		if p.src == p.dst {
			continue
		}
		a, b := p.chain[0], p.chain[1]
		z, y := p.chain[len(p.chain)-1], p.chain[len(p.chain)-2]
		rights[a] = append(rights[a], attach{pi, centerY(b), 0})
		lefts[z] = append(lefts[z], attach{pi, centerY(y), len(p.chain) - 1})
	}
	ends := make(map[[2]int]float64) // (pair, chain index) → y
	spread := func(v int, as []attach) {
		slices.SortFunc(as, func(x, y attach) int { return cmp.Or(cmp.Compare(x.other, y.other), cmp.Compare(x.pair, y.pair)) })
		span := nodeH * 0.6
		for i, a := range as {
			y := centerY(v)
			if len(as) > 1 {
				y += -span/2 + span*float64(i)/float64(len(as)-1)
			}
			ends[[2]int{a.pair, a.index}] = y
		}
	}
	for v := range n {
		spread(v, lefts[v])
		spread(v, rights[v])
	}

	// Routes and labels. Nodes are obstacles for labels; labels are placed
	// in pair order, each on the first candidate spot that is free.
	var taken []rect
	for _, pn := range L.nodes {
		taken = append(taken, rect{pn.x - 4, pn.y - 4, pn.w + 8, pn.h + 8})
	}
	for pi, p := range pairs {
		pp := placedPair{pair: p}
		pp.lines = pairLabel(g, p.edges)
		lw := 0.0
		for _, l := range pp.lines {
			lw = max(lw, textWidth(spansText(l), labelChar))
		}
		lw += 10
		lh := float64(len(pp.lines))*labelLineH + 4
		if p.src == p.dst {
			r := L.nodes[p.src].rect
			pp.self = true
			pp.points = []point{{r.x + r.w - 24, r.y}, {r.x + r.w - 10, r.y - 28}, {r.x + r.w + 18, r.y - 10}, {r.x + r.w, r.y + 12}}
			pp.label = rect{r.x + r.w + 4, r.y - 28 - lh, lw, lh}
			L.pairs = append(L.pairs, pp)
			taken = append(taken, pp.label)
			continue
		}
		for i, it := range p.chain {
			x := colX(items[it].col)
			switch {
			case i == 0:
				pp.points = append(pp.points, point{x + nodeW, ends[[2]int{pi, 0}]})
			case i == len(p.chain)-1:
				pp.points = append(pp.points, point{x, ends[[2]int{pi, i}]})
			default:
				cy := centerY(it)
				pp.points = append(pp.points, point{x, cy}, point{x + nodeW, cy})
			}
		}
		// Candidate label spots: along each gap segment, nearest the
		// destination first, sliding away from the middle.
		// Points are [source side, (virtual left, virtual right)..., destination
		// side], so the gaps between columns start at even indexes.
		type seg struct{ a, b point }
		var segs []seg
		for i := len(pp.points) - 2; i >= 0; i-- {
			if i%2 == 0 {
				segs = append(segs, seg{pp.points[i], pp.points[i+1]})
			}
		}
		// Prefer the segment next to the end with fewer paths (the label
		// then tells which of that node's few paths it is): by default the
		// destination, the source when more paths enter the destination
		// than leave the source. Then the other end, then the middle.
		if len(segs) > 1 {
			first, second := segs[0], segs[len(segs)-1]
			if len(in[p.dst]) > len(out[p.src]) {
				first, second = second, first
			}
			segs = append([]seg{first, second}, segs[1:len(segs)-1]...)
		}
		var best rect
		found := false
		for _, t := range []float64{0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8, -1, -2} {
			for _, s := range segs {
				c := bezierAt(s.a, s.b, t)
				if t < 0 {
					// Last resorts: just above or below the middle.
					c = bezierAt(s.a, s.b, 0.5)
					c.y += (lh + 4) * (t*2 + 3) // -1 → +1 height, -2 → -1 height
				}
				r := rect{c.x - lw/2, c.y - lh/2, lw, lh}
				if !found {
					best, found = r, true // fall back to the first candidate
				}
				if !collides(r, taken) {
					best = r
					goto placed
				}
			}
		}
		crowded++
	placed:
		pp.label = best
		taken = append(taken, best)
		L.pairs = append(L.pairs, pp)
	}
	// Labels of self-loops may stick out above the picture: shift all down.
	minY := 0.0
	for _, pp := range L.pairs {
		minY = min(minY, pp.label.y-marginY/2)
	}
	if minY < 0 {
		L.shift(-minY)
	}
	for _, pp := range L.pairs {
		L.width = max(L.width, pp.label.x+pp.label.w+marginX)
		L.height = max(L.height, pp.label.y+pp.label.h+marginY)
	}
	for _, pp := range L.pairs {
		if pp.reversed {
			slices.Reverse(pp.points)
		}
	}
	return L, crowded
}

func (L *layout) shift(dy float64) {
	for i := range L.nodes {
		L.nodes[i].y += dy
	}
	for i := range L.pairs {
		L.pairs[i].label.y += dy
		for j := range L.pairs[i].points {
			L.pairs[i].points[j].y += dy
		}
	}
	L.height += dy
}

func collides(r rect, taken []rect) bool {
	for _, t := range taken {
		if r.overlaps(t) {
			return true
		}
	}
	return false
}

// bezierAt is the point at t of the S-shaped cubic Bézier from a to b with
// horizontal tangents (control points at the horizontal middle).
func bezierAt(a, b point, t float64) point {
	mx := (a.x + b.x) / 2
	c1, c2 := point{mx, a.y}, point{mx, b.y}
	u := 1 - t
	return point{
		u*u*u*a.x + 3*u*u*t*c1.x + 3*u*t*t*c2.x + t*t*t*b.x,
		u*u*u*a.y + 3*u*u*t*c1.y + 3*u*t*t*c2.y + t*t*t*b.y,
	}
}

// pathData is the SVG path through pts: straight where y does not change
// within a column, S-curves with horizontal tangents across gaps.
func pathData(pts []point, self bool) string {
	var b strings.Builder
	b.WriteString("M" + num(pts[0].x) + " " + num(pts[0].y))
	if self {
		b.WriteString(" C" + num(pts[1].x) + " " + num(pts[1].y) + " " + num(pts[2].x) + " " + num(pts[2].y) + " " + num(pts[3].x) + " " + num(pts[3].y))
		return b.String()
	}
	for i := 1; i < len(pts); i++ {
		a, c := pts[i-1], pts[i]
		if a.y == c.y {
			b.WriteString(" L" + num(c.x) + " " + num(c.y))
			continue
		}
		mx := (a.x + c.x) / 2
		b.WriteString(" C" + num(mx) + " " + num(a.y) + " " + num(mx) + " " + num(c.y) + " " + num(c.x) + " " + num(c.y))
	}
	return b.String()
}

// num formats a coordinate with one decimal.
func num(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
