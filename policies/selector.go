package policies

// How a proposal selects a workload: selectors that stay true when
// workloads are added later. A selector keeps the workload's naming labels
// and adds only what tells it apart from its siblings (the identities of
// its namespace that carry the same naming labels), so a later workload of
// another application never matches it, whatever other labels it shares.

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
)

// NamingLabels are the label keys that name an application, in the order
// a proposal prefers them: the Kubernetes recommended label
// (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/),
// the conventional `app`, and `k8s-app` of cluster add-ons. A proposed
// selector keeps every one of them the workload carries.
var NamingLabels = []string{"app.kubernetes.io/name", "app", "k8s-app"}

// labelHelmInstance is the recommended label of an application's instance
// (a Helm release): kept beside app.kubernetes.io/name, since two releases
// of one chart are two workloads.
const labelHelmInstance = "app.kubernetes.io/instance"

// distinguishPriority orders the label keys tried, after the naming
// labels, to tell a workload from its siblings: keys that name a part or a
// variant of an application first.
var distinguishPriority = []string{
	labelHelmInstance, "app.kubernetes.io/component", "component", "version", "track", "stage", "env", "environment",
	"variant", "tier", "role", "release", "name",
}

// volatileLabels change with every release of the same workload (a chart
// version, an application version, who deployed it): tried last, only when
// nothing else tells siblings apart.
var volatileLabels = []string{"helm.sh/chart", "chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "heritage"}

// labelRank orders keys for distinguishing siblings: distinguishPriority,
// then other keys by name, then volatileLabels.
func labelRank(k string) int {
	if i := slices.Index(distinguishPriority, k); i >= 0 {
		return i
	}
	if i := slices.Index(volatileLabels, k); i >= 0 {
		return 1000 + i
	}
	return 500
}

// identityIndex knows every identity by namespace, the workload names
// behind each, and finds each identity's selector.
type identityIndex struct {
	byNS      map[string]map[string]model.Identity // namespace -> key -> normalized identity
	workloads map[string]map[string]bool           // key -> workload names
	sel       map[string]selResult
}

type selResult struct {
	sel metav1.LabelSelector
	ok  bool
}

func newIdentityIndex() *identityIndex {
	return &identityIndex{byNS: map[string]map[string]model.Identity{}, workloads: map[string]map[string]bool{}, sel: map[string]selResult{}}
}

func (x *identityIndex) add(i model.Identity) {
	i = i.Normalize()
	m := x.byNS[i.Namespace]
	if m == nil {
		m = map[string]model.Identity{}
		x.byNS[i.Namespace] = m
	}
	k := i.Key()
	if _, ok := m[k]; !ok {
		m[k] = model.Identity{Namespace: i.Namespace, Labels: i.Labels}
	}
	if i.Workload != "" {
		if x.workloads[k] == nil {
			x.workloads[k] = map[string]bool{}
		}
		x.workloads[k][i.Workload] = true
	}
}

// count returns the number of known identities.
func (x *identityIndex) count() int {
	n := 0
	for _, m := range x.byNS {
		n += len(m)
	}
	return n
}

// workloadName returns the name of the workload behind identity i (the
// smallest when several share its labels), or "" when none is known.
func (x *identityIndex) workloadName(i model.Identity) string {
	ws := x.workloads[i.NormalKey()]
	if len(ws) == 0 {
		return i.Workload
	}
	return slices.Sorted(maps.Keys(ws))[0]
}

// workloadNames returns "namespace/workload" for each workload behind i.
func (x *identityIndex) workloadNames(i model.Identity) []string {
	ws := x.workloads[i.NormalKey()]
	if len(ws) == 0 {
		if i.Workload != "" {
			return []string{i.Namespace + "/" + i.Workload}
		}
		return []string{i.NormalKey()}
	}
	var out []string
	for _, w := range slices.Sorted(maps.Keys(ws)) {
		out = append(out, i.Namespace+"/"+w)
	}
	return out
}

// baseLabels returns the label keys of i a selector always keeps: its
// naming labels (and the Helm instance beside app.kubernetes.io/name);
// without any, a label whose value is the workload's name; without that,
// every label (the narrowest selector there is).
func baseLabels(i model.Identity, workload string) []string {
	var base []string
	for _, k := range NamingLabels {
		if _, ok := i.Labels[k]; ok {
			base = append(base, k)
		}
	}
	if _, ok := i.Labels["app.kubernetes.io/name"]; ok {
		if _, ok := i.Labels[labelHelmInstance]; ok {
			base = append(base, labelHelmInstance)
		}
	}
	if len(base) > 0 {
		return base
	}
	if workload != "" {
		keys := slices.SortedFunc(maps.Keys(i.Labels), func(a, b string) int {
			return cmp.Or(cmp.Compare(labelRank(a), labelRank(b)), strings.Compare(a, b))
		})
		for _, k := range keys {
			if i.Labels[k] == workload {
				return []string{k}
			}
		}
	}
	return slices.Sorted(maps.Keys(i.Labels))
}

// selector returns the selector of identity i: its base labels (see
// baseLabels) plus the fewest other labels of i (at most four, tried in
// labelRank order) that no sibling carries entirely, a sibling being
// another known identity of the namespace that carries the labels chosen.
// A sibling that carries every label of i (a canary beside its stable
// workload, with one more label) is excluded with a DoesNotExist
// expression on a key it has and i lacks. ok is false only when another
// identity has exactly i's labels, which no selector tells apart.
func (x *identityIndex) selector(i model.Identity) (metav1.LabelSelector, bool) {
	i = i.Normalize()
	key := i.Key()
	if r, ok := x.sel[key]; ok {
		return *r.sel.DeepCopy(), r.ok
	}
	base := baseLabels(i, x.workloadName(i))
	carries := func(o model.Identity, keys []string) bool {
		for _, k := range keys {
			if v, ok := o.Labels[k]; !ok || v != i.Labels[k] {
				return false
			}
		}
		return true
	}
	var siblings []model.Identity
	for _, k := range slices.Sorted(maps.Keys(x.byNS[i.Namespace])) {
		if o := x.byNS[i.Namespace][k]; k != key && carries(o, base) {
			siblings = append(siblings, o)
		}
	}
	chosen := base
	if len(siblings) > 0 {
		var rest []string
		for k := range i.Labels {
			if !slices.Contains(base, k) {
				rest = append(rest, k)
			}
		}
		slices.SortFunc(rest, func(a, b string) int { return cmp.Or(cmp.Compare(labelRank(a), labelRank(b)), strings.Compare(a, b)) })
		exclusive := func(keys []string) bool {
			for _, o := range siblings {
				if carries(o, keys) {
					return false
				}
			}
			return true
		}
		var found []string
		for size := 1; size <= min(len(rest), 4) && found == nil; size++ {
			combinations(len(rest), size, func(idx []int) bool {
				keys := slices.Clone(base)
				for _, n := range idx {
					keys = append(keys, rest[n])
				}
				if exclusive(keys) {
					found = keys
					return false
				}
				return true
			})
		}
		if found == nil {
			found = slices.Sorted(maps.Keys(i.Labels))
		}
		chosen = found
	}
	sel := metav1.LabelSelector{MatchLabels: map[string]string{}}
	for _, k := range chosen {
		sel.MatchLabels[k] = i.Labels[k]
	}
	ok := true
	// Siblings that carry every label of i: exclude each by a key it has
	// and i lacks.
	excl := map[string]bool{}
	for _, o := range siblings {
		if !carries(o, slices.Collect(maps.Keys(i.Labels))) {
			continue
		}
		var extra []string
		for k := range o.Labels {
			if _, has := i.Labels[k]; !has {
				extra = append(extra, k)
			}
		}
		if len(extra) == 0 {
			ok = false // the same labels: nothing tells them apart
			continue
		}
		if slices.ContainsFunc(extra, func(k string) bool { return excl[k] }) {
			continue
		}
		slices.SortFunc(extra, func(a, b string) int { return cmp.Or(cmp.Compare(labelRank(a), labelRank(b)), strings.Compare(a, b)) })
		excl[extra[0]] = true
	}
	for _, k := range slices.Sorted(maps.Keys(excl)) {
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpDoesNotExist})
	}
	if len(sel.MatchLabels) == 0 {
		sel.MatchLabels = nil
	}
	x.sel[key] = selResult{sel, ok}
	return *sel.DeepCopy(), ok
}

// combinations calls f with each size-k subset of [0, n) in lexicographic
// order until f returns false.
func combinations(n, k int, f func([]int) bool) {
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	for {
		if !f(idx) {
			return
		}
		i := k - 1
		for i >= 0 && idx[i] == n-k+i {
			i--
		}
		if i < 0 {
			return
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}
