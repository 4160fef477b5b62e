// Package compile turns policies plus the inventory into one dataplane
// rule set per endpoint (pod), incrementally: Compiler.UpdatePod and
// DeletePod rebuild only the rule sets a one-pod change affects. It is
// pure: it uses the dataplane's RuleSet type and makes no kernel call.
package compile
