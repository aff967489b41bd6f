// Package gossip is the fast liveness layer of kelpie-cluster: it runs
// hashicorp/serf (on hashicorp/memberlist, SWIM with acked probes and the
// Lifeguard extensions) and turns what serf learns into our own types.
//
// # What it owns
//
//   - The only import of serf and memberlist in the project. Every other
//     package sees Member, Tags, Status and Event, never a serf type.
//   - The serf/memberlist configuration: the failure-detector profile
//     (Config, DefaultConfig for a LAN, TestConfig for in-process tests), the
//     reap and tombstone timeouts (set deliberately; serf's defaults are 24 h).
//   - A memberlist Transport (transport.go) that binds the node's own
//     BindAddr as the source of every outgoing packet and stream, and that
//     applies an optional in-process netx.Filter to every packet and stream in
//     both directions, so that tests can cut links without touching the host
//     network.
//   - Routing of serf/memberlist logs (their *log.Logger "[LEVEL] ..." output)
//     into the injected *slog.Logger.
//   - The encoding of node tags (role, HTTP address, Raft address, zone,
//     build version, boot ID, bootstrap-expect) into serf tags.
//
// # What it does not own
//
// Gossip never decides membership. A failed, left or reaped member reported
// here is only a suggestion: the Raft leader (package consensus) re-checks it
// against the committed view and commits a view change with a quorum. Nothing
// in this package is durable, and nothing here should be used to place or
// fence actors. Gossip can also drop events (see DroppedEvents): consumers must
// periodically reconcile Members against the committed view.
//
// # Lifecycle
//
//	g, err := gossip.New(cfg)       // validates, starts nothing
//	err = g.Start(ctx)              // binds sockets, starts serf and the event pump
//	n, err := g.Join(ctx, seeds)    // ip:port seeds; error if none reachable
//	... g.Events(), g.Members(), g.AliveServers() ...
//	err = g.Leave(ctx)              // graceful: broadcast our departure
//	err = g.Close()                 // shut down serf+memberlist, wait for goroutines
//
// Close without Leave looks like a crash to the other members (they report
// the node failed after the suspicion timeout); Leave then Close makes them
// report it left. Done is closed whenever serf stops, also when serf shuts
// itself down after losing a node-name conflict; the owner should treat that
// as fatal for the node.
//
// # Concurrency model
//
// All methods are safe for concurrent use. serf delivers member events on a
// buffered channel that exactly one goroutine (the event pump) drains; it
// converts each serf.MemberEvent into one Event per member and hands it to the
// Events channel with a non-blocking send. When the Events channel is full the
// event is discarded and DroppedEvents is incremented: serf's goroutines are
// never blocked by a slow consumer. The Events channel is closed after Done.
//
// Join and Leave run the blocking serf call on a goroutine owned by the
// Gossip and return early when their context ends; Close waits for those
// goroutines (and for an in-flight Leave before shutting serf down, because
// memberlist panics when Leave races with Shutdown). Members, Member and
// LocalMember are snapshots taken under serf's own lock; AliveServers reads
// a set of servers that the pump keeps current from the member events
// (updated before each event is handed on), so it costs the size of the
// server set, not of the cluster. A small mutex guards the lifecycle state;
// it is never held across serf calls that wait on the network.
package gossip
