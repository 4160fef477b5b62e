// Package observer captures per-endpoint flow metadata (conntrack events,
// the dataplane's NFLOG verdict log, DNS answers), turns it into flow records
// and aggregates them into the edges of the communication graph.
//
// # Sources (observer_linux.go)
//
// For every endpoint network namespace the Observer opens, by file
// descriptor or on a thread locked inside the namespace:
//
//   - a ctnetlink socket on the conntrack NEW and DESTROY groups, with
//     conntrack accounting and timestamps switched on in that namespace
//     (EnableAccounting), decoded without allocating (ctevent.go). NEW gives
//     a model.PhaseStart record, DESTROY a model.PhaseEnd record with packets, bytes and
//     times; in between, every Config.CounterInterval, the observer asks
//     the kernel for each live connection (IPCTNL_MSG_CT_GET) and emits
//     model.PhaseUpdate records with the growth of its counters
//     (counters.go), so that counters do not wait for the end of TIME_WAIT. A namespace tracks connections only once an nftables rule there
//     uses ct, as the dataplane's table does. Entries that exist when the
//     observer attaches are read from a conntrack dump, with their original
//     tuple, as start records.
//
// # Who opened a connection (origin.go)
//
// A record's Src is the side that opened the connection. Conntrack's
// original tuple is the direction of the first packet it tracked, which is
// the reply direction for a connection picked up in mid-flight: when the
// dataplane's table (and with it connection tracking) is first installed,
// a TCP connection under way is picked up from its next packet
// (nf_conntrack_tcp_loose) and a UDP reply that comes first creates the
// entry. The observer recognises a TCP pickup by the
// IP_CT_TCP_FLAG_BE_LIBERAL flags the kernel sets on it, judges UDP entries
// by their ports, and asks the endpoint's sockets (sock_diag: a listener
// or an unconnected socket on a fixed port is the server, a connected
// socket the client) which side opened it; the record is turned around
// (nanoseg_observer_direction_corrected_total) or, where nothing tells,
// marked DirectionUnknown, counted
// (nanoseg_observer_direction_unknown_total) and kept out of edges. The
// verdict log's records follow the same rule: a logged packet is the first
// of its conntrack entry, which for a reply whose request went untracked
// (a DNS answer to a query sent before the dataplane's table was
// installed) is the reply; such a record is turned around or marked
// DirectionUnknown (not counted in those metrics), never an edge from the
// server to the client's ephemeral port.
//   - the verdict log: NFLOG group verdictlog.Group (18), prefix
//     "nanoseg:<verdict>:<rule id>" (internal/verdictlog), the
//     logged packet decoded with gopacket. One model.PhaseComplete record per
//     connection attempt (retransmissions within two minutes are dropped).
//   - AF_PACKET sockets with a classic BPF filter for DNS responses (UDP and
//     TCP from port 53) received by the endpoint, decoded with gopacket's
//     layers.DNS into address → asked-name answers held for their TTL
//     (Names), so that an external address is reported by the name the
//     workload asked for.
//
// # Never losing data silently
//
// An overflowing conntrack event socket (ENOBUFS) is counted
// (nanoseg_observer_events_lost_total), logged, and followed by a dump of the
// conntrack table: entries the observer did not know become start records
// marked Resynced (with the counters of the dump), known ones that vanished
// are forgotten (their end and final counters went with the overflow), and
// a DESTROY whose NEW was lost becomes a model.PhaseComplete record. Every
// connection that is still in the table at the dump (a closed TCP
// connection stays there through TIME_WAIT, 120s by default) is therefore
// counted exactly once; only a connection that both began and left the
// table during the overflow is lost, and the loss is counted. Malformed messages are counted
// (nanoseg_observer_decode_errors_total) and skipped; messages that carry
// no record by design (the NLMSG_DONE that closes each NFLOG batch,
// acknowledgements, someone else's log prefix) are skipped without
// counting. The decoders are fuzzed (fuzz_test.go, corpus in testdata/fuzz).
//
// # Edges (aggregate.go)
//
// An Aggregator folds records into edges keyed by (source workload,
// destination workload or external peer, protocol, destination port); the
// source port never appears, replicas collapse into their workload, and an
// address the Inventory does not know is an external peer named by DNS
// where an answer was seen. A connection whose two ends are both observed
// is counted once, at the client's egress; see Aggregator for the rule.
//
// It never imports the dataplane package; it reads the verdict log through
// the prefix format that the dataplane documents.
package observer
