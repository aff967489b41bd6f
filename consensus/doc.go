// Package consensus owns the Raft side of kelpie-cluster: hashicorp/raft
// itself, the replicated state machine (FSM) holding the committed membership
// view, the versioned command encoding, FSM snapshots, the log and stable
// stores, the leader loop and voter management. It is the only package that
// imports github.com/hashicorp/raft; everything else sees our own types
// (View, Member, Status, ...).
//
// # State machine
//
// FSM applies committed log entries to a View. Apply is deterministic: it
// reads no clock and no random source and never depends on map iteration
// order, so every replica applying the same log reaches the same view and
// writes byte-identical snapshots. Anything time-dependent (for example
// ViewChange.ProposedAtUnixNano) is stamped into the command by the proposer.
//
// A ViewChange is a batch of per-member changes committed as one epoch: the
// changes are applied in order, each must satisfy LegalTransition (or keep
// the status and only update metadata), and one illegal change rejects the
// whole batch. A batch that changes nothing returns ErrNoChange and does not
// bump the epoch, so the epoch only increases, by one per effective command.
//
// # Commands and snapshots
//
// Commands are encoded as a codec version byte, a command type byte and a
// JSON payload (see Encode and DecodeCommand). Decoding is strict: unknown
// versions, types or JSON fields, trailing data and oversized payloads are
// rejected with ErrInvalidCommand, and a rejected entry leaves the state
// unchanged. Snapshots are a versioned, self-describing JSON document that
// Restore validates completely before replacing any state.
//
// # Concurrency
//
// raft calls Apply, Snapshot and Restore on its FSM goroutine; Persist of a
// snapshot runs on another goroutine, concurrently with later Applies, and
// works on a copy captured by Snapshot. Readers (View, AppliedIndex, Watch)
// may run on any goroutine: they take a copy under an RWMutex that is held
// only for the copy, never across I/O or callbacks. Watch returns a channel
// that is closed when the view next changes, for blocking queries.
package consensus
