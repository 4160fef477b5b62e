// Package node is the node side of nanoseg (Linux): one observer per
// endpoint feeding an aggregator whose edges and verdict events go to an
// observation sink, the desired rule sets compiled incrementally and
// applied through one dataplane.Reconciler, and probes from inside
// endpoints. Node implements controller.Node.
package node
