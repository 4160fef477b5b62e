// Package e2e holds end-to-end tests that run the built nanoseg binary
// against real network namespaces, real nftables and real packets. They need
// root and skip, saying so, without it.
package e2e
