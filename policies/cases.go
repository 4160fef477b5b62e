package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/nanoseg/nanoseg/model"
)

// Case is one verdict case file, in the format of
// policies/testdata/cases/README.md: a world, policies, connections with
// their expected verdict, and optional ordered steps that change the world or
// the policies, each followed by its own connections.
type Case struct {
	Name        string           `json:"name"`
	About       string           `json:"about,omitempty"`
	Namespaces  []CaseNamespace  `json:"namespaces,omitempty"`
	Nodes       []CaseNode       `json:"nodes,omitempty"`
	Pods        []CasePod        `json:"pods,omitempty"`
	Policies    []Object         `json:"policies,omitempty"`
	Connections []CaseConnection `json:"connections,omitempty"`
	Steps       []CaseStep       `json:"steps,omitempty"`
}

// CaseNamespace is a namespace entry of a case.
type CaseNamespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// CaseNode is a node entry of a case: its name, labels and addresses (its
// InternalIP addresses), for the nodes peers of ClusterNetworkPolicies.
type CaseNode struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	IPs    []string          `json:"ips,omitempty"`
}

// CasePod is a pod entry of a case; Phase defaults to Running. Node is the
// node it runs on (spec.nodeName), which need not be listed in nodes; a
// hostNetwork pod without ips has its listed node's addresses.
type CasePod struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	IPs         []string          `json:"ips,omitempty"`
	Phase       corev1.PodPhase   `json:"phase,omitempty"`
	HostNetwork bool              `json:"hostNetwork,omitempty"`
	Ports       []CasePort        `json:"ports,omitempty"`
	Node        string            `json:"node,omitempty"`
}

// CasePort is a named container port of a case pod; Protocol defaults to TCP.
type CasePort struct {
	Name     string         `json:"name"`
	Port     int32          `json:"port"`
	Protocol model.Protocol `json:"protocol,omitempty"`
}

// CaseConnection is a connection and its expected verdict (allow or deny;
// audit-deny is accepted for NanoSegments in audit mode).
type CaseConnection struct {
	From     string         `json:"from"`
	To       string         `json:"to"`
	Port     int32          `json:"port"`
	Protocol model.Protocol `json:"protocol,omitempty"`
	Expect   model.Verdict  `json:"expect"`
}

// CaseStep is one ordered change; its parts apply in the order of the
// fields: delete, apply, setNamespaceLabels, setPodLabels, addNamespaces,
// addPods, deletePods, deleteNamespaces; then its connections are checked.
type CaseStep struct {
	Delete             OneOrMany[string]        `json:"delete,omitempty"`
	Apply              OneOrMany[Object]        `json:"apply,omitempty"`
	SetNamespaceLabels OneOrMany[CaseNamespace] `json:"setNamespaceLabels,omitempty"`
	SetPodLabels       OneOrMany[CasePodLabels] `json:"setPodLabels,omitempty"`
	AddNamespaces      OneOrMany[CaseNamespace] `json:"addNamespaces,omitempty"`
	AddPods            OneOrMany[CasePod]       `json:"addPods,omitempty"`
	DeletePods         OneOrMany[string]        `json:"deletePods,omitempty"`
	DeleteNamespaces   OneOrMany[string]        `json:"deleteNamespaces,omitempty"`
	Connections        []CaseConnection         `json:"connections,omitempty"`
}

// CasePodLabels sets the labels of pod "namespace/name".
type CasePodLabels struct {
	Pod    string            `json:"pod"`
	Labels map[string]string `json:"labels"`
}

// ParseCase decodes a case file strictly (unknown fields are errors with
// their field path) and validates it: addresses, ports, protocols, expected
// verdicts, endpoints and every policy. All problems are reported at once,
// prefixed by file.
func ParseCase(file string, data []byte) (*Case, error) {
	var c Case
	if err := DecodeStrict(file, data, &c); err != nil {
		return nil, err
	}
	if errs := c.validate(); len(errs) > 0 {
		return nil, fmt.Errorf("validate %s: %w: %w", file, ErrInvalid, errs.ToAggregate())
	}
	return &c, nil
}

// LoadCase reads and parses a case file.
func LoadCase(file string) (*Case, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read case: %w", err)
	}
	return ParseCase(file, data)
}

func (c *Case) validate() field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(field.NewPath("name"), ""))
	}
	nodes := map[string]bool{}
	for i, n := range c.Nodes {
		np := field.NewPath("nodes").Index(i)
		switch {
		case n.Name == "":
			errs = append(errs, field.Required(np.Child("name"), ""))
		case nodes[n.Name]:
			errs = append(errs, field.Duplicate(np.Child("name"), n.Name))
		}
		nodes[n.Name] = true
		for j, ip := range n.IPs {
			if _, err := netip.ParseAddr(ip); err != nil {
				errs = append(errs, field.Invalid(np.Child("ips").Index(j), ip, "must be an IPv4 or IPv6 address"))
			}
		}
	}
	for i, p := range c.Pods {
		errs = append(errs, p.validate(field.NewPath("pods").Index(i))...)
	}
	for i, o := range c.Policies {
		errs = append(errs, prefixErrs(o.Validate(), field.NewPath("policies").Index(i))...)
	}
	for i, conn := range c.Connections {
		errs = append(errs, conn.validate(field.NewPath("connections").Index(i))...)
	}
	for i, s := range c.Steps {
		sp := field.NewPath("steps").Index(i)
		for j, o := range s.Apply {
			errs = append(errs, prefixErrs(o.Validate(), sp.Child("apply").Index(j))...)
		}
		for j, d := range s.Delete {
			if ns, n, ok := strings.Cut(d, "/"); d == "" || ok && (ns == "" || n == "" || strings.Contains(n, "/")) {
				errs = append(errs, field.Invalid(sp.Child("delete").Index(j), d, "want namespace/name, or the name of a ClusterNetworkPolicy"))
			}
		}
		for j, p := range s.AddPods {
			errs = append(errs, p.validate(sp.Child("addPods").Index(j))...)
		}
		for j, conn := range s.Connections {
			errs = append(errs, conn.validate(sp.Child("connections").Index(j))...)
		}
	}
	return errs
}

func prefixErrs(errs field.ErrorList, p *field.Path) field.ErrorList {
	for _, e := range errs {
		e.Field = p.String() + "." + e.Field
	}
	return errs
}

func (p CasePod) validate(fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p.Namespace == "" {
		errs = append(errs, field.Required(fp.Child("namespace"), ""))
	}
	if p.Name == "" {
		errs = append(errs, field.Required(fp.Child("name"), ""))
	}
	for i, ip := range p.IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			errs = append(errs, field.Invalid(fp.Child("ips").Index(i), ip, "must be an IPv4 or IPv6 address"))
		}
	}
	switch p.Phase {
	case "", corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown:
	default:
		errs = append(errs, field.NotSupported(fp.Child("phase"), p.Phase, []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}))
	}
	for i, port := range p.Ports {
		pp := fp.Child("ports").Index(i)
		if port.Port < 1 || port.Port > 65535 {
			errs = append(errs, field.Invalid(pp.Child("port"), port.Port, "must be between 1 and 65535, inclusive"))
		}
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
	}
	return errs
}

func validateProtocol(p model.Protocol, fp *field.Path) field.ErrorList {
	switch p {
	case "", model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP:
		return nil
	}
	return field.ErrorList{field.NotSupported(fp, p, []model.Protocol{model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP})}
}

func (c CaseConnection) validate(fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := ParseConnEnd(c.From); err != nil {
		errs = append(errs, field.Invalid(fp.Child("from"), c.From, "want namespace/name or an IP address"))
	}
	if _, err := ParseConnEnd(c.To); err != nil {
		errs = append(errs, field.Invalid(fp.Child("to"), c.To, "want namespace/name or an IP address"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, field.Invalid(fp.Child("port"), c.Port, "must be between 0 and 65535, inclusive"))
	}
	errs = append(errs, validateProtocol(c.Protocol, fp.Child("protocol"))...)
	switch c.Expect {
	case model.VerdictAllow, model.VerdictDeny, model.VerdictAuditDeny:
	default:
		errs = append(errs, field.NotSupported(fp.Child("expect"), c.Expect, []model.Verdict{model.VerdictAllow, model.VerdictDeny, model.VerdictAuditDeny}))
	}
	return errs
}

func (n CaseNode) node() Node {
	out := Node{Name: n.Name, Labels: n.Labels}
	for _, ip := range n.IPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			out.IPs = append(out.IPs, a)
		}
	}
	return out
}

// pod converts a case pod; a hostNetwork pod without addresses gets its
// node's from nodes.
func (p CasePod) pod(nodes []Node) Pod {
	out := Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Phase: p.Phase, HostNetwork: p.HostNetwork, Node: p.Node}
	for _, ip := range p.IPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			out.IPs = append(out.IPs, a)
		}
	}
	if p.HostNetwork && len(out.IPs) == 0 {
		for _, n := range nodes {
			if n.Name == p.Node {
				out.IPs = append(out.IPs, n.IPs...)
			}
		}
	}
	for _, cp := range p.Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = model.ProtocolTCP
		}
		out.Ports = append(out.Ports, model.ContainerPort{Name: cp.Name, Port: cp.Port, Protocol: proto})
	}
	return out
}

// Connection converts a case connection; Protocol defaults to TCP.
func (c CaseConnection) Connection() (Connection, error) {
	from, err := ParseConnEnd(c.From)
	if err != nil {
		return Connection{}, err
	}
	to, err := ParseConnEnd(c.To)
	if err != nil {
		return Connection{}, err
	}
	proto := c.Protocol
	if proto == "" {
		proto = model.ProtocolTCP
	}
	return Connection{From: from, To: to, Protocol: proto, Port: c.Port}, nil
}

// Mismatch is one connection whose verdict differs from the expected one.
// Step is -1 for the case's top-level connections.
type Mismatch struct {
	Step       int
	Index      int
	Connection CaseConnection
	Got        Evaluation
}

// String returns a line naming the step, the connection, both verdicts and
// the reason.
func (m Mismatch) String() string {
	where := "connections"
	if m.Step >= 0 {
		where = fmt.Sprintf("steps[%d].connections", m.Step)
	}
	c := m.Connection
	return fmt.Sprintf("%s[%d]: %s -> %s %d/%s: expected %s, got %s (%s)", where, m.Index, c.From, c.To, c.Port, c.Protocol, c.Expect, m.Got.Action, m.Got.Reason())
}

// CaseState is the world and the policies of a case at one point of its
// steps.
type CaseState struct {
	World    *MemWorld
	Policies map[string]Object // by "Kind namespace/name"
}

// NewCaseState builds the initial world and policies of a case.
func (c *Case) NewCaseState() (*CaseState, error) {
	st := &CaseState{World: &MemWorld{}, Policies: map[string]Object{}}
	var errs []error
	for _, ns := range c.Namespaces {
		errs = append(errs, st.World.AddNamespace(Namespace(ns)))
	}
	for _, n := range c.Nodes {
		errs = append(errs, st.World.AddNode(n.node()))
	}
	for _, p := range c.Pods {
		errs = append(errs, st.World.AddPod(p.pod(st.World.Nodes())))
	}
	for _, o := range c.Policies {
		st.Policies[o.Ref().String()] = o
	}
	return st, errors.Join(errs...)
}

// Set compiles the current policies.
func (st *CaseState) Set() (PolicySet, error) {
	keys := make([]string, 0, len(st.Policies))
	for k := range st.Policies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	objs := make([]Object, 0, len(keys))
	for _, k := range keys {
		objs = append(objs, st.Policies[k])
	}
	return NewObjectSet(objs)
}

// Apply performs one step's changes in the documented order.
func (st *CaseState) Apply(s CaseStep) error {
	var errs []error
	for _, d := range s.Delete {
		found := false
		for k, o := range st.Policies {
			if o.Key() == d {
				delete(st.Policies, k)
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("delete policy %s: %w", d, ErrNotFound))
		}
	}
	for _, o := range s.Apply {
		st.Policies[o.Ref().String()] = o
	}
	for _, n := range s.SetNamespaceLabels {
		errs = append(errs, st.World.SetNamespaceLabels(n.Name, n.Labels))
	}
	for _, p := range s.SetPodLabels {
		errs = append(errs, st.World.SetPodLabels(p.Pod, p.Labels))
	}
	for _, n := range s.AddNamespaces {
		errs = append(errs, st.World.AddNamespace(Namespace(n)))
	}
	for _, p := range s.AddPods {
		errs = append(errs, st.World.AddPod(p.pod(st.World.Nodes())))
	}
	for _, p := range s.DeletePods {
		errs = append(errs, st.World.DeletePod(p))
	}
	for _, n := range s.DeleteNamespaces {
		errs = append(errs, st.World.DeleteNamespace(n))
		for k, o := range st.Policies {
			if o.Ref().Namespace == n {
				delete(st.Policies, k)
			}
		}
	}
	return errors.Join(errs...)
}

// Run evaluates every connection of the case, step by step, and returns
// every mismatch. The error reports a case that cannot run (a step naming a
// missing pod, an invalid policy).
func (c *Case) Run() ([]Mismatch, error) {
	st, err := c.NewCaseState()
	if err != nil {
		return nil, fmt.Errorf("run case %s: %w", c.Name, err)
	}
	var out []Mismatch
	check := func(step int, conns []CaseConnection) error {
		set, err := st.Set()
		if err != nil {
			return err
		}
		for i, cc := range conns {
			conn, err := cc.Connection()
			if err != nil {
				return err
			}
			v := Evaluate(st.World, set, conn)
			if v.Err != "" {
				return fmt.Errorf("connection %d: %s", i, v.Err)
			}
			if v.Action != cc.Expect {
				out = append(out, Mismatch{Step: step, Index: i, Connection: cc, Got: v})
			}
		}
		return nil
	}
	if err := check(-1, c.Connections); err != nil {
		return out, fmt.Errorf("run case %s: %w", c.Name, err)
	}
	for i, s := range c.Steps {
		if err := st.Apply(s); err != nil {
			return out, fmt.Errorf("run case %s: step %d: %w", c.Name, i, err)
		}
		if err := check(i, s.Connections); err != nil {
			return out, fmt.Errorf("run case %s: step %d: %w", c.Name, i, err)
		}
	}
	return out, nil
}

// WorldFile is a world without expectations: the namespaces, pods and
// policies fields of a case file (the same format, strictly parsed).
type WorldFile struct {
	Namespaces []CaseNamespace `json:"namespaces,omitempty"`
	Nodes      []CaseNode      `json:"nodes,omitempty"`
	Pods       []CasePod       `json:"pods,omitempty"`
	Policies   []Object        `json:"policies,omitempty"`
}

// LoadWorld reads a world file strictly and returns its state; errors name
// the file and field path.
func LoadWorld(file string) (*CaseState, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read world: %w", err)
	}
	var wf WorldFile
	if err := DecodeStrict(file, data, &wf); err != nil {
		return nil, err
	}
	c := &Case{Name: file, Namespaces: wf.Namespaces, Nodes: wf.Nodes, Pods: wf.Pods, Policies: wf.Policies}
	if errs := c.validate(); len(errs) > 0 {
		return nil, fmt.Errorf("validate %s: %w: %w", file, ErrInvalid, errs.ToAggregate())
	}
	st, err := c.NewCaseState()
	if err != nil {
		return nil, fmt.Errorf("load world %s: %w", file, err)
	}
	return st, nil
}
