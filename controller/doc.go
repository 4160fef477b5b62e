// Package controller joins nanoseg's parts: the inventory of endpoints, the
// communication graph, the lifecycle of policy revisions and promotions, the
// compilation of policies into per-endpoint rule sets, the store, evidence,
// and the API server.
package controller
