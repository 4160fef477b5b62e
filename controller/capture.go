package controller

// Captures: a nanosegment is the policy of one workload, but it applies to
// every pod its selector selects, as a NetworkPolicy does. A selector that
// also selects a workload added later (a hand-written {version: v1} that a
// later {app: api, version: v1} carries too) makes that workload follow
// another's policy: its own clients may be denied while its status says
// observe. Captures are computed from the policies in force and the
// inventory, shown by Status and logged by WarnCaptures.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/model"
)

// Capture is a nanosegment in force that belongs to another workload and
// selects this one's endpoints: it applies to them in its mode, whatever
// this workload's own mode and revision.
type Capture struct {
	// Policy is the nanosegment, "namespace/name".
	Policy string `json:"policy"`
	// Workload is the workload the nanosegment belongs to
	// ("namespace/workload"), Revision its revision in force, Mode its mode.
	Workload string     `json:"workload"`
	Revision int        `json:"revision"`
	Mode     model.Mode `json:"mode"`
	// Selector is the nanosegment's selector as Kubernetes prints it.
	Selector string `json:"selector"`
}

// String is "nanosegment shop/web-v1 of shop/web-v1 rev 2 (enforce), selector version=v1".
func (c Capture) String() string {
	return fmt.Sprintf("nanosegment %s of %s rev %d (%s), selector %s", c.Policy, c.Workload, c.Revision, c.Mode, c.Selector)
}

// modeRank orders modes by strength: observe < audit < enforce.
func modeRank(m model.Mode) int {
	switch m {
	case model.ModeEnforce:
		return 2
	case model.ModeAudit:
		return 1
	}
	return 0
}

// Captures returns, per workload of the inventory ("namespace/workload"),
// the nanosegments in force of other workloads whose selector selects any
// of its endpoints, sorted by policy.
func (s *Service) Captures() (map[string][]Capture, error) {
	active, err := s.Active()
	if err != nil {
		return nil, err
	}
	out := map[string][]Capture{}
	if len(active) == 0 {
		return out, nil
	}
	byNS := map[string][]string{} // namespace -> workloads with an endpoint there
	for _, w := range s.inv.Workloads() {
		if eps := s.inv.Workload(w); len(eps) > 0 {
			byNS[eps[0].Namespace] = append(byNS[eps[0].Namespace], w)
		}
	}
	for _, ap := range active {
		p := ap.Policy
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.Selector)
		if err != nil {
			continue // validated when stored; nothing it could select
		}
		c := Capture{Policy: p.Namespace + "/" + p.Name, Workload: ap.State.Workload, Revision: ap.State.Revision, Mode: ap.State.Mode,
			Selector: metav1.FormatLabelSelector(&p.Spec.Selector)}
		for _, w := range byNS[p.Namespace] {
			if w == ap.State.Workload {
				continue
			}
			if slices.ContainsFunc(s.inv.Workload(w), func(e model.Endpoint) bool {
				return e.Namespace == p.Namespace && sel.Matches(labels.Set(e.Labels))
			}) {
				out[w] = append(out[w], c)
			}
		}
	}
	for w := range out {
		slices.SortFunc(out[w], func(a, b Capture) int { return strings.Compare(a.Policy, b.Policy) })
	}
	return out, nil
}

// effectiveMode is the strongest of own and the captures' modes: what the
// workload's endpoints enforce.
func effectiveMode(own model.Mode, caps []Capture) model.Mode {
	m := own
	if m == "" {
		m = model.ModeObserve
	}
	for _, c := range caps {
		if modeRank(c.Mode) > modeRank(m) {
			m = c.Mode
		}
	}
	return m
}

// WarnCaptures logs a warning for each capture that was not there at the
// previous call (a new workload carrying an enforced policy's labels, a
// promotion of a policy whose selector reaches further than its workload)
// and an info line for each that ended. The agent calls it after every
// inventory refresh and every Enforce; it is cheap when nothing changed.
func (s *Service) WarnCaptures() {
	caps, err := s.Captures()
	if err != nil {
		s.log.Warn("check captures", "err", err)
		return
	}
	now := map[string]bool{}
	s.capMu.Lock()
	defer s.capMu.Unlock()
	for _, w := range slices.Sorted(maps.Keys(caps)) {
		own := model.ModeObserve
		if st, err := s.store.State(w); err == nil && st.Mode != "" {
			own = st.Mode
		}
		for _, c := range caps[w] {
			k := w + "|" + c.String()
			now[k] = true
			if !s.captured[k] {
				s.log.Warn("policy in force captures a workload it was not made for: the workload follows it",
					"workload", w, "ownMode", own, "capturedBy", c.Policy, "policyWorkload", c.Workload,
					"revision", c.Revision, "mode", c.Mode, "selector", c.Selector,
					"fix", "narrow the policy's selector (policy propose keeps naming labels) or promote "+w+" with a policy of its own")
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.captured)) {
		if !now[k] {
			w, c, _ := strings.Cut(k, "|")
			s.log.Info("capture ended", "workload", w, "was", c)
		}
	}
	s.captured = now
}
