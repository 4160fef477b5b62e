// Package agent is the standalone composition of nanoseg: one process on
// one Linux host with the bbolt store (store/bolt), the inventory sources
// (inventory), the node side (node), the controller service (controller)
// and the API server (server). cmd/nanoseg only turns configuration into
// a Config and calls New and Run.
package agent
