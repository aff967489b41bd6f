// Package migration moves an actor from one node to another without ever
// having two live copies and without losing its state (G7
// MigrationAtomicity, G4 SingleActivation).
//
// The Coordinator runs on the leader and drives each migration through three
// phases, every phase change a Raft commit made through the Log interface:
//
//  1. Prepare: Log.Start commits MigrationStarted; the actor is Migrating and
//     no node may activate it.
//  2. Transfer: Mover.Handoff makes the source deactivate the actor (from that
//     instant it refuses the actor) and stream its final state, framed with a
//     SHA-256 checksum, to the target, which verifies and stages it without
//     activating.
//  3. Commit: Log.Commit commits MigrationCommitted with a new fencing token;
//     the target then activates with the staged state.
//
// Any failure or timeout ends in Log.Abort (MigrationAborted): the actor goes
// back to its source, which reactivates it with the state it parked, or
// becomes re-placeable if the source is gone. Records live in the FSM, so a
// new leader calls Resume to end every migration its predecessor left
// running.
//
// This package does not import raft or do network I/O itself: the node
// implements Log and Mover. The frame codec (WriteFrame/ReadFrame) is pure.
// Concurrency: a Coordinator is safe for concurrent use; at most one
// migration per actor runs at a time, and a cooldown follows each.
package migration
