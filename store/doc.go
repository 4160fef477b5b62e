// Package store holds the seams of nanoseg's state: a PolicyStore
// (revisions, the state of every workload, the hash-chained promotion
// history) and an observation sink and reader (edges, verdict events,
// observation spans: how long each endpoint was observed),
// with the record types of their own (Revision, WorkloadState; promotion
// events, verdict events and edges are model's) and an in-memory
// implementation (Mem) for tests and fakes. The standalone agent's bbolt implementation is in
// store/bolt, so that importing the interfaces does not pull bbolt in; a
// Kubernetes implementation (custom resources) will be another.
package store
