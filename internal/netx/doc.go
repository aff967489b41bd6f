// Package netx holds the network plumbing every other package shares:
// dialers that bind the node's own address as the source of every outgoing
// connection, and an optional in-process fault filter.
//
// Source binding matters because the fault-injection suite tells nodes apart
// by the source IP of their packets (each node lives on its own 127.0.0.N).
// The Filter is the in-process twin of an nftables rule set: tests running
// several nodes inside one process use it to cut links between node IPs,
// one-way or both ways, without touching the host network.
//
// Concurrency: Faults is safe for concurrent use; wrapped connections consult
// it on every Read and Write, so a cut applies to established connections too.
package netx
