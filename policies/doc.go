// Package policies holds nanoseg's policy API: the NanoSegment object, its
// validation, Kubernetes NetworkPolicy import, export and evaluation, and the
// inference of proposed policy from an observed communication graph.
//
// It is pure: it imports the standard library and Kubernetes apimachinery
// types only, never client-go, nftables, netlink or viper.
package policies
