package gossip

import "errors"

var (
	// ErrInvalidConfig is returned (wrapped) by Config.Validate and New when
	// the configuration is unusable. Not retryable: fix the configuration.
	ErrInvalidConfig = errors.New("gossip: invalid config")

	// ErrNotStarted is returned by Join and Leave when Start has not been
	// called yet. Call Start first.
	ErrNotStarted = errors.New("gossip: not started")

	// ErrAlreadyStarted is returned by a second Start. Not retryable.
	ErrAlreadyStarted = errors.New("gossip: already started")

	// ErrClosed is returned by every call made after Close, and by calls
	// made after serf shut itself down (see Done). Not retryable: build a new
	// Gossip.
	ErrClosed = errors.New("gossip: closed")

	// ErrNoSeedReachable is returned (wrapped together with serf's error) by
	// Join when no seed could be contacted. Retryable: seeds may come up.
	ErrNoSeedReachable = errors.New("gossip: no seed reachable")
)
