package cluster

import (
	"errors"
	"fmt"

	"github.com/kelpie/cluster/placement"
)

// Sentinel errors. Every error the library returns wraps one of these (or a
// context error); match with errors.Is, never on the text.
var (
	// ErrNoQuorum: the change could not be committed because this side of the
	// cluster cannot reach a majority of voters (or no leader could be found)
	// within Config.QuorumTimeout. Nothing was applied by this call, though
	// an entry the old leader had already replicated may still commit: re-read
	// before retrying. Retry after the partition heals. The concrete type is
	// *NoQuorumError.
	ErrNoQuorum = errors.New("no quorum")
	// ErrNotLeader: the operation must run on the leader and this node is not
	// it. Forwarding handles this for most calls; retry on the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrUnknownNode: the node ID is not in the committed view.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNotMember: this node is not (or no longer) Active in the committed
	// view, so it cannot do what was asked.
	ErrNotMember = errors.New("not an active member")
	// ErrClosed: the Node is closed.
	ErrClosed = errors.New("node closed")
	// ErrNotServer: the operation needs a server (Raft) node.
	ErrNotServer = errors.New("not a server")
	// ErrNotReady: the node is still recovering its committed state after a
	// restart and will not serve a view older than one it served before.
	// Retry shortly.
	ErrNotReady = errors.New("not ready")
	// ErrInvalidArgument: the request is malformed. Do not retry unchanged.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrStaleToken: work carried an older fencing token than the actor's
	// current activation. Look the actor up again; never retry unchanged.
	ErrStaleToken = placement.ErrStaleToken
	// ErrNoCapacity: no Active node matching the request has free capacity.
	ErrNoCapacity = placement.ErrNoCapacity
	// ErrNoEligibleNode: no Active node matches the placement constraints.
	ErrNoEligibleNode = placement.ErrNoEligibleNode
	// ErrFenced: this node's membership lease has expired, so it has
	// deactivated its actors and refuses work until it renews. Retry
	// elsewhere or later.
	ErrFenced = errors.New("fenced: membership lease expired")
	// ErrLeasePending: the actor's previous owner failed, and the leader is
	// waiting for that owner's lease to have surely expired before placing
	// the actor again. Retry after the indicated delay.
	ErrLeasePending = errors.New("previous owner's lease has not surely expired")
	// ErrNotOwner: this node does not (or no longer) host the actor under the
	// presented placement. Look the actor up again.
	ErrNotOwner = errors.New("not the actor's owner")
	// ErrMigrating: the actor is being migrated; nothing may run it until
	// the migration commits or aborts. Retry shortly (the request was not
	// executed).
	ErrMigrating = errors.New("actor is migrating")
	// ErrNotPlaced: the actor has no placement.
	ErrNotPlaced = errors.New("actor not placed")
	// ErrNoHost: this node was built without a Host (or without an Invoker)
	// and cannot run actors.
	ErrNoHost = errors.New("no actor host on this node")
)

// NoQuorumError says how many voters this side could reach.
type NoQuorumError struct {
	Reachable int // voters this node believes reachable (including itself)
	Total     int // voters in the Raft configuration
	Cause     error
}

func (e *NoQuorumError) Error() string {
	s := fmt.Sprintf("no quorum: %d of %d voters reachable", e.Reachable, e.Total)
	if e.Total == 0 {
		s = "no quorum: no leader known"
	}
	if e.Cause != nil {
		s += " (" + e.Cause.Error() + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrNoQuorum) true.
func (e *NoQuorumError) Is(target error) bool { return target == ErrNoQuorum }

// Unwrap exposes the cause.
func (e *NoQuorumError) Unwrap() error { return e.Cause }

// HasQuorum is the quorum rule: a strict majority of the configured voters
// (never of the current view). 2 of 3 and 3 of 5 pass; 1 of 3, 2 of 4 and 2
// of 5 fail.
func HasQuorum(reachable, total int) bool {
	return total > 0 && 2*reachable > total
}
