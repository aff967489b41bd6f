// Package cluster is kelpie-cluster: cluster membership and quorum-gated
// actor placement for fleets of actor-runtime processes.
//
// Gossip (serf/memberlist, package gossip) is the fast liveness layer. A
// small set of Raft voters (package consensus) commits the authoritative
// membership view and every placement and migration decision; gossip only
// suggests, and the leader turns suggestions into committed view changes.
// Placements carry fencing tokens (the Raft index of their commit), members
// hold leases and fence themselves when they cannot renew, and migrations
// move actors source-first with checksummed state (package migration).
//
// # Using the library
//
//	cfg := cluster.DefaultConfig()           // every field documents its default
//	cfg.NodeID, cfg.BindAddr = "n1", "10.0.0.1"
//	cfg.Server, cfg.BootstrapExpect = true, 3 // or leave Server false for a client
//	cfg.DataDir = "/var/lib/kelpie/n1"
//	node, err := cluster.New(cfg, host)       // host implements Host (+ Invoker); starts nothing
//	err = node.Start(ctx)                     // listeners, gossip, Raft, loops
//	err = node.Join(ctx, seeds)               // returns once Active in the committed view
//	res, err := node.Place(ctx, "actor-1", cluster.PlaceOptions{})
//	out, err := node.Invoke(ctx, "actor-1", []byte(`{"op":"incr"}`)) // routed to the owner
//	mig, err := node.Migrate(ctx, "actor-1", "n2")
//	err = node.Leave(ctx)                     // drains, commits Left, leaves gossip
//	node.Close()                              // idempotent; waits for every goroutine
//
// View, Events, Leader, Lookup (local replica read), LookupConsistent,
// Release, Drain, Migrations and Keyring complete the API; the same
// operations are served over HTTP (/v1/...) and by kelpiectl.
//
// Errors are sentinels wrapped with %w (ErrNoQuorum, ErrNotLeader,
// ErrStaleToken, ErrMigrating, ErrNoCapacity, ErrFenced, ErrUnknownOutcome,
// ...); each says whether to retry. Without a quorum every write fails with
// a *NoQuorumError within Config.QuorumTimeout.
//
// # Concurrency
//
// A Node is safe for concurrent use. Start runs one goroutine per concern
// (HTTP server, gossip pump, view publisher, lease renewal, fencing, and on
// servers the leadership loop, which while leading runs the reconciler, the
// placement group-commit loop, voter management and the rebalancer); Close
// stops all of them. Callbacks from serf and raft never block: they are
// turned into non-blocking signals and a periodic reconcile repairs
// anything dropped.
package cluster
