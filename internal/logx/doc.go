// Package logx adapts the loggers of hashicorp libraries (hclog for raft,
// raft-wal and autopilot) to the node's injected *slog.Logger, so that no
// dependency prints on its own and every line carries the node's stable keys.
package logx
