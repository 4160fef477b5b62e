package policies

import "github.com/nanoseg/nanoseg/model"

// ProvenanceKey returns the key a proposed rule's provenance gives edge e
// in v1alpha1.Observed.Edges ("shop{app=web} -> shop{app=db} TCP/5432":
// workload identities with their labels, external peers by DNS name or
// address), and false for an edge inference cannot name.
func ProvenanceKey(e model.Edge) (string, bool) {
	ie, ok := inferable(e)
	if !ok {
		return "", false
	}
	return ie.key(), true
}
