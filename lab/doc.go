// Package lab builds a lab of container-like network namespaces from a
// topology file: one namespace per replica, joined by veth links to a switch
// that lives in a lab-owned namespace, with real servers, real clients on a
// schedule, and a DNS server that answers the topology's names.
//
// Every object the lab creates carries the lab's name, so `lab down` finds
// and removes all of it, also after `lab up` crashed half-way. Only the
// addresses 198.18.0.0/15 and 2001:db8::/32 are used, and no traffic leaves
// the lab's namespaces.
package lab
