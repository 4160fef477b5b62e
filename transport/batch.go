package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// Path is where the receiver takes batches (POST).
const Path = "/v1/observations"

// Audience is the audience of the node agents' projected ServiceAccount
// tokens; the receiver's TokenReview asks for it.
const Audience = "nanoseg-controller"

// Batch is one message from a node agent to the controller.
//
// JSON form (the body of POST /v1/observations, gzip allowed with
// Content-Encoding: gzip; unknown fields are refused):
//
//	{"node":"node-a","epoch":"5f0c…","seq":42,"full":false,
//	 "edges":[model.Edge…],"spans":[model.ObservedSpan…],
//	 "verdicts":[model.VerdictEvent…],"endpoints":[EndpointState…],
//	 "names":[{"addr":"198.19.0.9","name":"payments.example.com"}…],
//	 "ruleIDs":{"seg/shop/db/default.ingress":["NanoSegment shop/db"]}}
//
// Edges and Spans carry the agent's cumulative values for the keys that
// changed since its last acknowledged batch (store.EdgeKey,
// model.ObservedSpan.SpanKey): the receiver replaces what it holds for
// the node under that key, so a batch applied twice changes nothing.
// Verdicts are the events logged since the last acknowledged batch.
// Endpoints, when present (even empty), replace the node's endpoint
// list; absent (null) leaves it as it was. Names, likewise, replace the
// node's DNS names (what its observers learned from DNS answers: address
// → name), sent with a Full batch and when they changed.
type Batch struct {
	// Node is the Kubernetes node name of the sending agent.
	Node string `json:"node"`
	// Epoch is a random id of the agent process (a restart is a new
	// epoch); at most 64 bytes.
	Epoch string `json:"epoch"`
	// Seq numbers the batches of an epoch: 1, 2, 3, …; a retry repeats
	// its Seq.
	Seq uint64 `json:"seq"`
	// Full starts the node's state over: the receiver drops everything it
	// holds for the node (edges, spans, verdicts, endpoints) and takes
	// this batch; the batches that follow add to it as usual. An agent
	// sends its whole state, in as many batches as it needs, beginning
	// with a Full one, when it starts and when the receiver asks (409).
	Full      bool                 `json:"full,omitempty"`
	Edges     []model.Edge         `json:"edges,omitempty"`
	Spans     []model.ObservedSpan `json:"spans,omitempty"`
	Verdicts  []model.VerdictEvent `json:"verdicts,omitempty"`
	Endpoints []EndpointState      `json:"endpoints"`
	Names     []DNSName            `json:"names,omitempty"`
	// RuleIDs, likewise, replaces the node's table of default-verdict
	// rule ids (compile.DefaultID: the id a verdict record of an
	// endpoint no rule admitted carries) → the policies it stands for
	// ("NanoSegment shop/db"), sent with a Full batch and when it
	// changed; the controller names them in the NanoSegments' verdicts.
	RuleIDs map[string][]string `json:"ruleIDs,omitempty"`
}

// DNSName is one address a node agent's observers saw named in a DNS
// answer. JSON: {"addr":"198.19.0.9","name":"payments.example.com"}.
type DNSName struct {
	Addr netip.Addr `json:"addr"`
	Name string     `json:"name"`
}

// maxDNSName is the longest DNS name (RFC 1035, in text form).
const maxDNSName = 253

// EndpointState is what a node agent says of one of its local endpoints
// (pods whose netns it found and programs), for NanoSegment status.
//
// JSON: {"key":"shop_web-0","workload":"shop/web","mode":"enforce",
// "revision":3,"inSync":true,"error":"","counters":{"rule-id":{"packets":3,"bytes":180}},
// "defaults":{"Ingress":{"packets":1,"bytes":60}}}.
type EndpointState struct {
	// Key is "<namespace>_<pod>", the endpoint's netns name in the
	// Kubernetes inventory.
	Key string `json:"key"`
	// Workload is "namespace/workload".
	Workload string `json:"workload"`
	// Mode is the mode of the rule set applied to the endpoint ("" before
	// the first apply).
	Mode model.Mode `json:"mode,omitempty"`
	// Revision is the NanoSegment revision applied, 0 when not known.
	Revision int `json:"revision,omitempty"`
	// InSync: the last apply of the endpoint's desired rule set succeeded
	// and no drift is pending.
	InSync bool `json:"inSync"`
	// Error says why it is not in sync.
	Error string `json:"error,omitempty"`
	// Counters are the kernel's per-rule counters of the endpoint's
	// table, by rule id (optional; the agent reads them at most every
	// 15 s, so they lag by as much).
	Counters map[string]Count `json:"counters,omitempty"`
	// Defaults are the default verdict's counters by direction
	// ("Ingress", "Egress"; optional).
	Defaults map[model.Direction]Count `json:"defaults,omitempty"`
}

// Count is one kernel counter: packets and bytes.
// JSON: {"packets":12,"bytes":720}.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Limits of one batch's fields.
const (
	maxEpoch = 64
	maxNode  = 253
)

// Validate reports every problem of b at once, each named by its field
// path (edges[3].protocol); maxItems bounds each list (0: no bound).
func (b *Batch) Validate(maxItems int) error {
	var errs []error
	switch {
	case b.Node == "":
		errs = append(errs, errors.New("node: empty"))
	case len(b.Node) > maxNode || strings.ContainsAny(b.Node, " /_\t\n"):
		errs = append(errs, fmt.Errorf("node: %q is no Kubernetes node name", b.Node))
	}
	if b.Epoch == "" || len(b.Epoch) > maxEpoch {
		errs = append(errs, fmt.Errorf("epoch: %d bytes, want 1 to %d", len(b.Epoch), maxEpoch))
	}
	if b.Seq == 0 {
		errs = append(errs, errors.New("seq: 0, want 1 or more"))
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"edges", len(b.Edges)}, {"spans", len(b.Spans)}, {"verdicts", len(b.Verdicts)}, {"endpoints", len(b.Endpoints)}, {"names", len(b.Names)}, {"ruleIDs", len(b.RuleIDs)}} {
		if maxItems > 0 && l.n > maxItems {
			errs = append(errs, fmt.Errorf("%s: %d items, at most %d per batch", l.name, l.n, maxItems))
		}
	}
	for i, e := range b.Edges {
		if _, err := model.ParseProtocol(string(e.Protocol)); err != nil {
			errs = append(errs, fmt.Errorf("edges[%d].protocol: %q: want TCP, UDP, SCTP, ICMP, ICMPv6 or a number 0-255", i, e.Protocol))
		}
		if emptyPeer(e.Source) {
			errs = append(errs, fmt.Errorf("edges[%d].source: empty", i))
		}
		if emptyPeer(e.Destination) {
			errs = append(errs, fmt.Errorf("edges[%d].destination: empty", i))
		}
	}
	for i, s := range b.Spans {
		if s.Endpoint == "" {
			errs = append(errs, fmt.Errorf("spans[%d].endpoint: empty", i))
		}
		if s.End.Before(s.Start) {
			errs = append(errs, fmt.Errorf("spans[%d].end: before start", i))
		}
	}
	for i, ep := range b.Endpoints {
		if ep.Key == "" {
			errs = append(errs, fmt.Errorf("endpoints[%d].key: empty", i))
		}
		if ep.Mode != "" && !ep.Mode.Valid() {
			errs = append(errs, fmt.Errorf("endpoints[%d].mode: %q is not observe, audit or enforce", i, ep.Mode))
		}
	}
	for i, n := range b.Names {
		if !n.Addr.IsValid() {
			errs = append(errs, fmt.Errorf("names[%d].addr: empty", i))
		}
		if n.Name == "" || len(n.Name) > maxDNSName {
			errs = append(errs, fmt.Errorf("names[%d].name: %d bytes, want 1 to %d", i, len(n.Name), maxDNSName))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more problems", len(errs)-10))
	}
	return errors.Join(errs...)
}

// emptyPeer reports whether p names nothing: a workload peer without a
// namespace or workload, an external one without a name or address.
func emptyPeer(p model.Peer) bool {
	if p.External {
		return p.Name == "" && !p.Addr.IsValid()
	}
	return p.Namespace == "" || p.Workload == ""
}

// DecodeBatch decodes one batch from JSON, refusing unknown fields and
// trailing data; an error names the field (with its path for unknown
// fields, such as edges[2].colour).
func DecodeBatch(data []byte) (Batch, error) {
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return Batch{}, describeDecodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Batch{}, errors.New("batch: data after the JSON object")
	}
	return b, nil
}

// describeDecodeError turns a decode error into one naming the field.
func describeDecodeError(data []byte, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("batch: %s: %s where %s was expected", te.Field, te.Value, te.Type)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("batch: bad JSON: the body ends before the object does")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("batch: bad JSON at byte %d: %w", se.Offset, err)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if path := unknownFieldPath(data, strings.Trim(name, `"`)); path != "" {
			return fmt.Errorf("batch: %s: unknown field", path)
		}
		return fmt.Errorf("batch: %s: unknown field", name)
	}
	return fmt.Errorf("batch: %w", err)
}

// unknownFieldPath finds where field sits in data where Batch has no
// such field, as a path such as edges[2].colour, by walking the generic
// form beside the Go types ("" when not found).
func unknownFieldPath(data []byte, field string) string {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	return walkUnknown(v, reflect.TypeFor[Batch](), "", field)
}

// walkUnknown returns the path of key field in v where type t has no
// such JSON field.
func walkUnknown(v any, t reflect.Type, path, field string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
			return ""
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				if k == field {
					return strings.TrimPrefix(path+"."+k, ".")
				}
				continue
			}
			if p := walkUnknown(x[k], ft, path+"."+k, field); p != "" {
				return p
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return ""
		}
		for i, c := range x {
			if p := walkUnknown(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), field); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonFields returns the JSON names of struct type t's fields (embedded
// structs without a tag inlined, as encoding/json does) and their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			maps.Copy(out, jsonFields(f.Type))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
