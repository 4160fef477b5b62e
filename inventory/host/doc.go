// Package host holds the inventory sources of the standalone agent, the
// endpoints of one Linux host: a running lab (LabSource, the only place
// outside cmd/ and e2e/ that reads package lab), named network namespaces
// described by a labels file (LabelsFileSource), and the /run/netns watch
// that makes either notice a namespace the moment it appears (NetnsSource).
// Each implements inventory.Source; a Kubernetes source lives with the
// client-go code, not here.
package host
