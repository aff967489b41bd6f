// Package nemesis is the fault-injection toolkit of the integration suite,
// in the spirit of Jepsen: real kelpied processes, a workload, a nemesis
// that breaks the network and the processes, a recorded history, and one
// checker per guarantee of DESIGN.md (G1–G10) plus a linearizability
// checker for the demo counters.
//
// What it owns:
//
//   - netns.go: running a test inside a private network namespace that the
//     test creates itself (the test binary re-executes itself with
//     CLONE_NEWNET), so that the test process, the kelpied processes and the
//     nftables rules all live there and the host's network is never touched.
//   - nft.go: network faults as nftables rules in that namespace (full and
//     one-way cuts between node IPs, random packet loss), applied
//     atomically; every change is recorded with the directed links it cuts.
//   - cluster.go: the kelpied processes (one 127.0.0.N per node, its own data
//     dir and log), and the process faults: kill -9, SIGSTOP/SIGCONT,
//     restart with the same data dir, graceful leave and rejoin. Every fault
//     is recorded with CLOCK_MONOTONIC timestamps taken when it surely took
//     effect.
//   - workload.go, poller.go: concurrent clients (place, lookup, counter
//     incr/get, migrate against random nodes) and observers (status, view,
//     placement snapshots of every node), all recorded.
//   - history.go: the history (JSON lines, written as it happens, so that a
//     crashed run still leaves it) and its in-memory form.
//   - check*.go: the checkers. Each is a pure function of a History, so each
//     has a unit test that feeds it a hand-made history with the violation.
//   - scenario.go, schedule.go: a scenario is a cluster, a workload and a
//     nemesis schedule; Run executes it, heals, lets it settle, runs every
//     checker and reports the seed, the schedule, the failed checkers with
//     the offending operations, and where the history is.
//
// What it does not own: the kelpied binary (the caller builds it) and the
// decision to skip: PrivateNetns skips (or, with KELPIE_REQUIRE_NEMESIS=1,
// fails) when the test cannot run as root with nft.
//
// Time: every timestamp is CLOCK_MONOTONIC in nanoseconds (Mono), the clock
// the demo host stamps its activation log with, shared by every process on
// the machine, so operations, faults and activations can be compared.
//
// Concurrency: the Recorder and the Cluster are safe for concurrent use; the
// checkers run after the run, on a History nobody mutates.
package nemesis
