package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// strictElem is implemented by types that accept one item or a list of items
// (OneOrMany); the strict checker checks each item against Elem.
type strictElem interface{ strictElemType() reflect.Type }

// strictCustom is implemented by types that check their own fields.
type strictCustom interface {
	strictCheck(v any, p *field.Path) field.ErrorList
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	strictElemT     = reflect.TypeFor[strictElem]()
	strictCustomT   = reflect.TypeFor[strictCustom]()
)

// unknownFields walks the generic document v against Go type t (by its JSON
// tags) and reports every key t does not have, with its field path. Type
// mismatches are left to the decoder.
func unknownFields(v any, t reflect.Type, p *field.Path) field.ErrorList {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(strictCustomT) || reflect.PointerTo(t).Implements(strictCustomT) {
		return reflect.New(t).Interface().(strictCustom).strictCheck(v, p)
	}
	if t.Implements(strictElemT) || reflect.PointerTo(t).Implements(strictElemT) {
		et := reflect.New(t).Interface().(strictElem).strictElemType()
		if list, ok := v.([]any); ok {
			var errs field.ErrorList
			for i, item := range list {
				errs = append(errs, unknownFields(item, et, p.Index(i))...)
			}
			return errs
		}
		return unknownFields(v, et, p)
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		var errs field.ErrorList
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				known := slices.Sorted(func(yield func(string) bool) {
					for k := range fields {
						if !yield(k) {
							return
						}
					}
				})
				errs = append(errs, field.Forbidden(p.Child(k), fmt.Sprintf("%v (known fields: %s)", ErrUnknownField, strings.Join(known, ", "))))
				continue
			}
			errs = append(errs, unknownFields(m[k], ft, p.Child(k))...)
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		var errs field.ErrorList
		for k, val := range m {
			errs = append(errs, unknownFields(val, t.Elem(), p.Key(k))...)
		}
		return errs
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return nil
		}
		var errs field.ErrorList
		for i, item := range list {
			errs = append(errs, unknownFields(item, t.Elem(), p.Index(i))...)
		}
		return errs
	}
	return nil
}

func collectFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}

// DecodeStrict decodes one YAML (or JSON) document into out, rejecting
// unknown fields. Every unknown field is reported at once with its field
// path, prefixed by file; malformed YAML and type mismatches are reported as
// the decoder found them.
func DecodeStrict(file string, data []byte, out any) error {
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return fmt.Errorf("parse %s: %w", file, err)
	}
	if generic == nil {
		return fmt.Errorf("parse %s: %w: empty document", file, ErrInvalid)
	}
	if errs := unknownFields(generic, reflect.TypeOf(out), nil); len(errs) > 0 {
		return fmt.Errorf("parse %s: %w", file, errs.ToAggregate())
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s: %w", file, err)
	}
	return nil
}

// OneOrMany holds a list written either as a list or as one bare item.
type OneOrMany[T any] []T

// UnmarshalJSON accepts a JSON list of T or a single T.
func (o *OneOrMany[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var list []T
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
		*o = list
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*o = nil
		return nil
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*o = []T{one}
	return nil
}

func (OneOrMany[T]) strictElemType() reflect.Type { return reflect.TypeFor[T]() }

// Object is one policy document: a NetworkPolicy (networking.k8s.io/v1), a
// NanoSegment (nanoseg.io/v1alpha1) or a ClusterNetworkPolicy
// (policy.networking.k8s.io/v1alpha2), chosen by its kind. Exactly one field
// is set after decoding.
type Object struct {
	NetworkPolicy        *networkingv1.NetworkPolicy
	NanoSegment          *v1alpha1.NanoSegment
	ClusterNetworkPolicy *cnpv1alpha2.ClusterNetworkPolicy
}

// Key returns "namespace/name" of the object, or the name alone for a
// ClusterNetworkPolicy (cluster-scoped).
func (o Object) Key() string {
	if o.NetworkPolicy != nil {
		return o.NetworkPolicy.Namespace + "/" + o.NetworkPolicy.Name
	}
	if o.NanoSegment != nil {
		return o.NanoSegment.Namespace + "/" + o.NanoSegment.Name
	}
	if o.ClusterNetworkPolicy != nil {
		return o.ClusterNetworkPolicy.Name
	}
	return ""
}

// Ref returns the object's kind, namespace and name.
func (o Object) Ref() PolicyRef {
	if o.NetworkPolicy != nil {
		return PolicyRef{"NetworkPolicy", o.NetworkPolicy.Namespace, o.NetworkPolicy.Name}
	}
	if o.NanoSegment != nil {
		return PolicyRef{v1alpha1.Kind, o.NanoSegment.Namespace, o.NanoSegment.Name}
	}
	if o.ClusterNetworkPolicy != nil {
		return PolicyRef{Kind: cnpv1alpha2.Kind, Name: o.ClusterNetworkPolicy.Name}
	}
	return PolicyRef{}
}

// Validate returns every problem of the object with field paths below p.
// A ClusterNetworkPolicy document with metadata.namespace is refused here
// (Forbidden at metadata.namespace), not in ValidateClusterNetworkPolicy:
// the API server clears the namespace of a cluster-scoped object, so only
// a written document can carry one, and a policy stored before this check
// still compiles.
func (o Object) Validate() field.ErrorList {
	switch {
	case o.NetworkPolicy != nil:
		return ValidateNetworkPolicy(o.NetworkPolicy)
	case o.NanoSegment != nil:
		return ValidateNanoSegment(o.NanoSegment)
	case o.ClusterNetworkPolicy != nil:
		errs := ValidateClusterNetworkPolicy(o.ClusterNetworkPolicy)
		if ns := o.ClusterNetworkPolicy.Namespace; ns != "" {
			// The API server would clear it (and kubectl drop it) without a
			// word; a user who writes one may think the policy is
			// namespaced, so a document with one is refused.
			errs = append(field.ErrorList{field.Forbidden(field.NewPath("metadata", "namespace"),
				fmt.Sprintf("ClusterNetworkPolicy is cluster-scoped: remove namespace %q (the policy applies to the pods its subject selects in every namespace)", ns))}, errs...)
		}
		return errs
	}
	return field.ErrorList{field.Required(field.NewPath("kind"), "NetworkPolicy, NanoSegment or ClusterNetworkPolicy")}
}

func objectKind(v any) string {
	m, _ := v.(map[string]any)
	k, _ := m["kind"].(string)
	return k
}

// UnmarshalJSON decodes by the document's kind.
func (o *Object) UnmarshalJSON(b []byte) error {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	switch head.Kind {
	case "NetworkPolicy":
		o.NetworkPolicy = &networkingv1.NetworkPolicy{}
		return json.Unmarshal(b, o.NetworkPolicy)
	case v1alpha1.Kind:
		o.NanoSegment = &v1alpha1.NanoSegment{}
		return json.Unmarshal(b, o.NanoSegment)
	case cnpv1alpha2.Kind:
		o.ClusterNetworkPolicy = &cnpv1alpha2.ClusterNetworkPolicy{}
		return json.Unmarshal(b, o.ClusterNetworkPolicy)
	}
	return fmt.Errorf("decode policy: kind %q: %w: want NetworkPolicy, NanoSegment or ClusterNetworkPolicy", head.Kind, ErrInvalid)
}

// MarshalJSON encodes the object that is set.
func (o Object) MarshalJSON() ([]byte, error) {
	if o.NetworkPolicy != nil {
		return json.Marshal(o.NetworkPolicy)
	}
	if o.ClusterNetworkPolicy != nil {
		return json.Marshal(o.ClusterNetworkPolicy)
	}
	return json.Marshal(o.NanoSegment)
}

func (*Object) strictCheck(v any, p *field.Path) field.ErrorList {
	switch k := objectKind(v); k {
	case "NetworkPolicy":
		return unknownFields(v, reflect.TypeFor[networkingv1.NetworkPolicy](), p)
	case v1alpha1.Kind:
		return unknownFields(v, reflect.TypeFor[v1alpha1.NanoSegment](), p)
	case cnpv1alpha2.Kind:
		return unknownFields(v, reflect.TypeFor[cnpv1alpha2.ClusterNetworkPolicy](), p)
	default:
		return field.ErrorList{field.NotSupported(p.Child("kind"), k, []string{"NetworkPolicy", v1alpha1.Kind, cnpv1alpha2.Kind})}
	}
}

// ParseObjects decodes a YAML stream of policy documents ("---" separated;
// a document may also be a List with items) strictly, and validates each.
// Errors name file, document index and field path; all are reported at once.
func ParseObjects(file string, data []byte) ([]Object, error) {
	var out []Object
	var errs []error
	for i, doc := range splitYAML(data) {
		var generic any
		if err := yaml.Unmarshal(doc, &generic); err != nil {
			errs = append(errs, fmt.Errorf("parse %s: document %d: %w", file, i, err))
			continue
		}
		if generic == nil {
			continue
		}
		docs := []any{generic}
		isList := false
		if m, ok := generic.(map[string]any); ok && strings.HasSuffix(objectKind(m), "List") {
			items, _ := m["items"].([]any)
			docs, isList = items, true
		}
		for j, d := range docs {
			where := fmt.Sprintf("%s: document %d", file, i)
			if isList {
				where = fmt.Sprintf("%s: document %d: items[%d]", file, i, j)
			}
			if fe := (*Object)(nil).strictCheck(d, nil); len(fe) > 0 {
				errs = append(errs, fmt.Errorf("parse %s: %w", where, fe.ToAggregate()))
				continue
			}
			raw, err := json.Marshal(d)
			if err != nil {
				errs = append(errs, fmt.Errorf("parse %s: %w", where, err))
				continue
			}
			var o Object
			if err := json.Unmarshal(raw, &o); err != nil {
				var te *json.UnmarshalTypeError
				if errors.As(err, &te) && te.Field != "" {
					errs = append(errs, fmt.Errorf("parse %s: %w", where, allTypeErrors(d, te).ToAggregate()))
					continue
				}
				errs = append(errs, fmt.Errorf("decode %s: %w", where, err))
				continue
			}
			if fe := o.Validate(); len(fe) > 0 {
				errs = append(errs, fmt.Errorf("validate %s: %s %s: %w: %w", where, o.Ref().Kind, o.Key(), ErrInvalid, fe.ToAggregate()))
				continue
			}
			out = append(out, o)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return out, nil
}

// splitYAML splits a YAML stream at lines that are exactly "---".
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for line := range bytes.Lines(data) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// ClusterNetworkPolicies returns the ClusterNetworkPolicies of objs.
func ClusterNetworkPolicies(objs []Object) []cnpv1alpha2.ClusterNetworkPolicy {
	var out []cnpv1alpha2.ClusterNetworkPolicy
	for _, o := range objs {
		if o.ClusterNetworkPolicy != nil {
			out = append(out, *o.ClusterNetworkPolicy)
		}
	}
	return out
}

// SplitObjects separates NetworkPolicies from NanoSegments; it leaves
// ClusterNetworkPolicies out (ClusterNetworkPolicies returns them).
func SplitObjects(objs []Object) ([]networkingv1.NetworkPolicy, []v1alpha1.NanoSegment) {
	var nps []networkingv1.NetworkPolicy
	var segs []v1alpha1.NanoSegment
	for _, o := range objs {
		if o.NetworkPolicy != nil {
			nps = append(nps, *o.NetworkPolicy)
		}
		if o.NanoSegment != nil {
			segs = append(segs, *o.NanoSegment)
		}
	}
	return nps, segs
}

// objectType returns the Go type a document of kind decodes into, nil for
// an unknown kind.
func objectType(kind string) reflect.Type {
	switch kind {
	case "NetworkPolicy":
		return reflect.TypeFor[networkingv1.NetworkPolicy]()
	case v1alpha1.Kind:
		return reflect.TypeFor[v1alpha1.NanoSegment]()
	case cnpv1alpha2.Kind:
		return reflect.TypeFor[cnpv1alpha2.ClusterNetworkPolicy]()
	}
	return nil
}

// allTypeErrors returns every value of doc (the generic form of a
// document) whose JSON type is not the one its field takes, as the API
// server's schema check reports them all at once; encoding/json's te names
// only the first. te's own errors (typeErrors) are always among them, so
// a value the walk cannot see (inside a type with its own decoder) is
// still named.
func allTypeErrors(doc any, te *json.UnmarshalTypeError) field.ErrorList {
	var out field.ErrorList
	if t := objectType(objectKind(doc)); t != nil {
		out = typeMismatches(doc, t, nil)
	}
	for _, e := range typeErrors(doc, te) {
		if !slices.ContainsFunc(out, func(o *field.Error) bool { return o.Field == e.Field }) {
			out = append(out, e)
		}
	}
	return out
}

// typeMismatches walks the generic value v against Go type t (by its JSON
// tags) and reports every value whose JSON type t's field does not take,
// in the words of typeErrors. null is taken anywhere; keys t does not have
// (unknownFields reports them) and types with their own decoder (other than
// OneOrMany, whose items are walked) are not looked into.
func typeMismatches(v any, t reflect.Type, p *field.Path) field.ErrorList {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil
	}
	if t.Implements(strictElemT) || reflect.PointerTo(t).Implements(strictElemT) {
		et := reflect.New(t).Interface().(strictElem).strictElemType()
		if list, ok := v.([]any); ok {
			var errs field.ErrorList
			for i, item := range list {
				errs = append(errs, typeMismatches(item, et, p.Index(i))...)
			}
			return errs
		}
		return typeMismatches(v, et, p)
	}
	if t.Kind() == reflect.Interface || t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	want := jsonTypeOf(t)
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		want = "string" // []byte is base64 text
	}
	if got := jsonTypeOfValue(v); got != want && !(want == "number" && got == "integer") {
		return field.ErrorList{field.Invalid(p, v, "must be of type "+want)}
	}
	var errs field.ErrorList
	switch t.Kind() {
	case reflect.Struct:
		m := v.(map[string]any)
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if ft, ok := fields[k]; ok {
				errs = append(errs, typeMismatches(m[k], ft, p.Child(k))...)
			}
		}
	case reflect.Map:
		m := v.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			errs = append(errs, typeMismatches(m[k], t.Elem(), p.Key(k))...)
		}
	case reflect.Slice, reflect.Array:
		if want == "array" {
			for i, item := range v.([]any) {
				errs = append(errs, typeMismatches(item, t.Elem(), p.Index(i))...)
			}
		}
	}
	return errs
}

// typeErrors turns a JSON type mismatch of decoding doc (the generic form
// of a document) into field errors as a kube-apiserver words them for a
// CRD's schema ("spec.priority: Invalid value: "7": must be of type
// integer"): one for every value at te's field path, with list indices,
// whose type is not the one the field takes; the path without indices
// when none is found.
func typeErrors(doc any, te *json.UnmarshalTypeError) field.ErrorList {
	want := jsonTypeOf(te.Type)
	segs := strings.Split(te.Field, ".")
	var out field.ErrorList
	var walk func(v any, i int, p *field.Path)
	walk = func(v any, i int, p *field.Path) {
		if l, ok := v.([]any); ok && i > 0 && i < len(segs) {
			for j, e := range l {
				walk(e, i, p.Index(j))
			}
			return
		}
		if i == len(segs) {
			if got := jsonTypeOfValue(v); got != want && !(want == "number" && got == "integer") {
				out = append(out, field.Invalid(p, v, "must be of type "+want))
			}
			return
		}
		if m, ok := v.(map[string]any); ok {
			if c, ok := m[segs[i]]; ok {
				walk(c, i+1, p.Child(segs[i]))
			}
		}
	}
	if m, ok := doc.(map[string]any); ok && len(segs) > 0 {
		if c, ok := m[segs[0]]; ok {
			walk(c, 1, field.NewPath(segs[0]))
		}
	}
	if len(out) == 0 {
		out = append(out, field.Invalid(field.NewPath(segs[0], segs[1:]...), te.Value, "must be of type "+want))
	}
	return out
}

// jsonTypeOf returns the JSON schema type ("integer", "number", "string",
// "boolean", "array", "object") that values of Go type t decode from.
func jsonTypeOf(t reflect.Type) string {
	if t == nil {
		return "object"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Pointer:
		return jsonTypeOf(t.Elem())
	}
	return "object"
}

// jsonTypeOfValue returns the JSON schema type of a generic YAML/JSON
// value (a whole number is "integer").
func jsonTypeOfValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case int, int64, int32, uint64:
		return "integer"
	case []any:
		return "array"
	}
	return "object"
}
