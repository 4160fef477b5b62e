// Package observer captures per-endpoint flow metadata (conntrack events,
// the dataplane's NFLOG verdict log, DNS answers), turns it into flow records
// and aggregates them into the edges of the communication graph.
//
// It never imports the dataplane package; it reads the verdict log through
// the prefix format that the dataplane documents.
package observer
