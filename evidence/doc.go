// Package evidence is nanoseg's compliance evidence: the model of a
// segmentation evidence bundle, its rendering into files (JSON, CSV and a
// self-contained HTML report), and its integrity (a manifest of SHA-256
// digests, an ed25519 signature over the manifest, and a hash link from each
// bundle to the previous one).
//
// A bundle is a directory:
//
//	manifest.json      every other file with its SHA-256 (hex) and size (bytes),
//	                   the signer's public key, the link to the previous bundle
//	manifest.sig       ed25519 signature over the exact bytes of manifest.json (base64)
//	signing-key.pub    the signer's public key (base64), also in the manifest
//	bundle.json        every section below in one document
//	inventory.json / .csv, policies.json, promotions.csv, history.json,
//	rules.json / rules.csv, counters.csv, denied.csv, verdict-events.csv,
//	reachability.csv, probes.csv, report.html (report.pdf when a converter exists)
//	cluster-network-policies.json, cluster-network-policy-rules.csv  the
//	                   ClusterNetworkPolicies in force, their rules and hits
//	cluster-network-policy-records.csv  every apply and deletion of them
//	                   (who, when; the policies as applied are in bundle.json)
//
// The sections answer what auditors ask about segmentation (PCI DSS 4.0
// requirement 11.4.5, segmentation testing; NIST SP 800-53 SC-7, boundary
// protection): what is in scope, which policy is active where and who
// promoted it, what the kernel actually holds and whether it drifted, which
// rules carried traffic, which flows were denied, how reachability shrank,
// and live probes showing that forbidden paths are closed.
//
// Everything here is pure except the file and key helpers (WriteDir,
// WriteTarGz, ExtractTarGz, LoadOrCreateKey, ReadChainHead, WriteChainHead,
// Verify), which touch only the paths they are given.
package evidence
