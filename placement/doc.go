// Package placement is the pure decision logic behind "where does each actor
// live" in kelpie-cluster. It owns four things:
//
//   - the committed placement table (Table): actor → Placement{node, fencing
//     token, state, incarnation}, per-node counts, and the orphans of failed
//     or departed nodes, with a deterministic, validated snapshot encoding;
//   - the placement policy (Choose): the preferred node if eligible, otherwise
//     the least-loaded Active node that matches the request's zone and labels
//     and has free capacity, ties broken by rendezvous hashing (Rendezvous);
//   - lease arithmetic (LeaseConfig): when a holder must consider its
//     membership lease over, and when the leader may treat it as surely
//     expired (guarantee G6 LeaseSafety);
//   - fence checks (CheckFence): work stamped with an older fencing token than
//     the current one is refused (G4 SingleActivation).
//
// It does not own membership (consensus/ and gossip/ do), command encoding or
// Raft (consensus/), migrations (migration/), or anything that talks to the
// network or disk.
//
// # Purity and determinism
//
// The package does no I/O, starts no goroutines, reads no clock and uses no
// randomness: time is always passed in. No output depends on map iteration
// order — every slice it returns is sorted and every choice is a function of
// its inputs only — so every Raft replica applying the same commands reaches
// the same table and writes byte-identical snapshots.
//
// # Users
//
// The consensus FSM holds a Table and applies committed placements to it
// deterministically (Put, Delete, ReleaseNode, Orphan), snapshotting it with
// MarshalJSON and restoring it with UnmarshalJSON. The leader chooses nodes
// with Choose (typically passing Table.Count as the load function) and waits
// for LeaseConfig.SurelyExpired before re-placing an orphan. Every node
// counts its own lease with LeaseConfig.HolderExpiry and checks the fencing
// token of incoming work with CheckFence.
//
// # Concurrency
//
// Nothing here is safe for concurrent mutation. Table is a plain data
// structure; callers that share one guard it themselves (the FSM uses an
// RWMutex: readers take RLock for Get/Count/ByNode, Apply takes Lock).
// Choose, Rendezvous, CheckFence and the LeaseConfig methods are pure
// functions and safe to call from any goroutine.
package placement
