package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// MaxMatrixCells bounds the cells of one Matrix answer: a request for
// more (workloads × workloads × ports) is refused, asking to narrow it.
const MaxMatrixCells = 40000

// MatrixCell is one (from, to, port) of a matrix with the policies'
// verdict and its explanation (the answer of GET /v1/explain).
type MatrixCell struct {
	From     string         `json:"from"`
	To       string         `json:"to"`
	Port     int32          `json:"port"`
	Protocol model.Protocol `json:"protocol"`
	// Action is allow, audit-deny or deny.
	Action model.Verdict `json:"action"`
	// Reason says in one line which policy and rule decided.
	Reason string `json:"reason"`
	// Tier is Admin or Baseline when a ClusterNetworkPolicy rule decided.
	Tier    string              `json:"tier,omitempty"`
	Explain policies.Evaluation `json:"explain"`
}

// Matrix is the truth table of a set of workloads (`nanoseg policy
// matrix`, per workload rather than per pod).
type Matrix struct {
	// Workloads are the rows and columns, sorted.
	Workloads []string `json:"workloads"`
	// Ports are the ports tabulated ("5432/TCP"), in the order asked.
	Ports []string `json:"ports"`
	// Cells are ordered by port, then from, then to: len(Ports) ×
	// len(Workloads)² cells.
	Cells []MatrixCell `json:"cells"`
}

// Matrix evaluates every pair of the workloads of namespace (every
// namespace for "") or of workloads (when given; namespace is then
// ignored) on each of ports ("5432/TCP"; default: the ports the
// workloads declare and the ports of the observed edges between them,
// else 80/TCP), with the policies in force, as Explain does: each
// workload is its first endpoint. Errors: ErrInvalid for an unknown
// workload or namespace, a malformed port, or more than MaxMatrixCells
// cells.
func (s *Service) Matrix(namespace string, workloads, ports []string) (Matrix, error) {
	m := Matrix{Workloads: []string{}, Ports: []string{}, Cells: []MatrixCell{}}
	known := s.inv.Workloads()
	switch {
	case len(workloads) > 0:
		for _, w := range workloads {
			if !slices.Contains(known, w) {
				return m, fmt.Errorf("%w: workloads: %q is not a workload of the inventory (known: %v)", ErrInvalid, Clip(w), Names(known))
			}
		}
		m.Workloads = slices.Compact(slices.Sorted(slices.Values(workloads)))
	default:
		for _, w := range known {
			if namespace == "" || strings.HasPrefix(w, namespace+"/") {
				m.Workloads = append(m.Workloads, w)
			}
		}
		if len(m.Workloads) == 0 {
			return m, fmt.Errorf("%w: namespace: %q has no workload in the inventory", ErrInvalid, Clip(namespace))
		}
	}
	type port struct {
		proto model.Protocol
		num   int32
	}
	var ps []port
	if len(ports) == 0 {
		seen := map[port]bool{}
		add := func(p port) {
			if !seen[p] {
				seen[p] = true
				ps = append(ps, p)
			}
		}
		in := map[string]bool{}
		for _, w := range m.Workloads {
			in[w] = true
			for _, e := range s.inv.Workload(w) {
				for _, cp := range e.Ports {
					add(port{cmp.Or(cp.Protocol, model.ProtocolTCP), cp.Port})
				}
			}
		}
		edges, err := s.obs.Edges(windowStart(0))
		if err != nil {
			return m, err
		}
		for _, e := range edges {
			if in[e.Source.String()] && in[e.Destination.String()] && e.Protocol != model.ProtocolICMPv6 {
				add(port{e.Protocol, int32(e.Port)})
			}
		}
		if len(ps) == 0 {
			ps = []port{{model.ProtocolTCP, 80}}
		}
		slices.SortFunc(ps, func(a, b port) int { return cmp.Or(cmp.Compare(a.num, b.num), cmp.Compare(a.proto, b.proto)) })
	}
	for _, p := range ports {
		proto, n, err := ParsePort("ports", p)
		if err != nil {
			return m, err
		}
		if proto == model.ProtocolICMPv6 {
			return m, fmt.Errorf("%w: ports: %q: ICMPv6 is evaluated as ICMP: give ICMP", ErrInvalid, Clip(p))
		}
		ps = append(ps, port{proto, int32(n)})
	}
	if n := len(ps) * len(m.Workloads) * len(m.Workloads); n > MaxMatrixCells {
		return m, fmt.Errorf("%w: %d workloads × %d ports make %d cells, more than %d: narrow it to a namespace, fewer workloads or ports",
			ErrInvalid, len(m.Workloads), len(ps), n, MaxMatrixCells)
	}
	ends := make([]policies.ConnEnd, len(m.Workloads))
	for i, w := range m.Workloads {
		e, err := s.endpointRef("workloads", w)
		if err != nil {
			return m, err
		}
		ends[i] = e
	}
	world, set, err := s.policyWorld()
	if err != nil {
		return m, err
	}
	for _, p := range ps {
		m.Ports = append(m.Ports, fmt.Sprintf("%d/%s", p.num, p.proto))
		for i, f := range m.Workloads {
			for j, t := range m.Workloads {
				v := policies.Evaluate(world, set, policies.Connection{From: ends[i], To: ends[j], Protocol: p.proto, Port: p.num})
				m.Cells = append(m.Cells, MatrixCell{From: f, To: t, Port: p.num, Protocol: p.proto, Action: v.Action, Reason: v.Reason(),
					Tier: v.DecidedByCluster(), Explain: v})
			}
		}
	}
	return m, nil
}
