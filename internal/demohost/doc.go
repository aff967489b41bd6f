// Package demohost is the built-in demo actor host of kelpied: in-memory
// counter actors reachable through the node's invoke API. It exists so the
// whole system can be driven and checked end to end.
//
// Every activation and deactivation is recorded with the node, the fencing
// token and CLOCK_MONOTONIC timestamps (shared by every process on the
// machine), in memory and optionally as JSON lines in a file, so that tests
// can check that the activation intervals of one actor never overlap across
// nodes (SingleActivation, G4). State lives only in memory: a crash loses it;
// state moves between nodes only by migration.
//
// Concurrency: all methods are safe for concurrent use; one mutex guards the
// actor map and the log.
package demohost
