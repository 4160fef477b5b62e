// Package controller is nanoseg's service: propose, apply, promote,
// rollback, status, diff, explain, verify and evidence export, as
// operations of Service over small seams — a policy store and an
// observation reader (package store), an inventory view (Inventory,
// implemented by inventory.Index) and the node side (Node, implemented by
// node.Node on Linux). It has no build tags and makes no kernel call: the
// standalone agent (agent/) and, later, a Kubernetes controller compose it
// with their own implementations of the seams, and its tests use fakes.
package controller
