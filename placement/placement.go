package placement

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrInvalidPlacement is returned (wrapped) by Placement.Validate,
// Orphan.Validate, State.UnmarshalText and Table.UnmarshalJSON when the input
// is malformed: an empty id, a zero token or index, an unknown state, or a
// duplicate actor. It means the input is corrupt; retrying cannot help.
var ErrInvalidPlacement = errors.New("placement: invalid placement")

// State of a placement. The zero value is invalid, so a placement whose state
// was never set is caught by Validate.
type State uint8

const (
	// StateActive: the actor may be activated on its node (under a valid
	// lease and with the placement's token).
	StateActive State = 1
	// StateMigrating: a migration of the actor is in flight; no new
	// activation anywhere until it is committed or aborted. The placement
	// still names the source node.
	StateMigrating State = 2
)

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return s == StateActive || s == StateMigrating }

// String returns "active", "migrating", or "State(N)" for an undefined value.
func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateMigrating:
		return "migrating"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

// MarshalText encodes a defined state as its name. An undefined state is an
// error, so no encoder writes something the decoder would refuse.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: state %d", ErrInvalidPlacement, uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText accepts exactly "active" or "migrating". On error s is
// unchanged.
func (s *State) UnmarshalText(b []byte) error {
	switch string(b) {
	case "active":
		*s = StateActive
	case "migrating":
		*s = StateMigrating
	default:
		return fmt.Errorf("%w: unknown state %q", ErrInvalidPlacement, b)
	}
	return nil
}

// Placement records where an actor lives.
type Placement struct {
	Actor string `json:"actor"`
	Node  string `json:"node"`
	// Token is the fencing token: the Raft index of the commit that placed
	// the actor (or committed its migration). It is never 0, grows with
	// every new acquisition, and hosts refuse work stamped with an older
	// one (see CheckFence).
	Token uint64 `json:"token"`
	State State  `json:"state"`
	// Incarnation is the owner node's view incarnation when the placement
	// was made, so a node that left and rejoined does not serve placements
	// made for its earlier life.
	Incarnation uint64 `json:"incarnation"`
	// Migration is the ID of the migration whose commit or abort produced
	// this placement (0 for a plain placement). The owner activates it with
	// the state that migration handed over or parked, and with nothing else.
	Migration uint64 `json:"migration,omitempty"`
}

// Validate checks that p could have been committed: non-empty, valid UTF-8
// actor and node, a non-zero token and a defined state. Errors wrap
// ErrInvalidPlacement. (Ids must be valid UTF-8 because the JSON snapshot
// would otherwise rewrite them, and two distinct ids could collide on restore.)
// The Table does not validate on Put; callers (the command decoder) do.
func (p Placement) Validate() error {
	switch {
	case p.Actor == "":
		return fmt.Errorf("%w: empty actor", ErrInvalidPlacement)
	case p.Node == "":
		return fmt.Errorf("%w: actor %q: empty node", ErrInvalidPlacement, p.Actor)
	case !utf8.ValidString(p.Actor) || !utf8.ValidString(p.Node):
		return fmt.Errorf("%w: actor %q: id not valid UTF-8", ErrInvalidPlacement, p.Actor)
	case p.Token == 0:
		return fmt.Errorf("%w: actor %q: token 0", ErrInvalidPlacement, p.Actor)
	case !p.State.Valid():
		return fmt.Errorf("%w: actor %q: state %d", ErrInvalidPlacement, p.Actor, uint8(p.State))
	}
	return nil
}

// Orphan remembers an actor whose owner failed or left, until the owner's
// lease has surely expired: before that the leader must not re-place it,
// because the old owner may still be serving it (G6 LeaseSafety).
type Orphan struct {
	Actor string `json:"actor"`
	// Node is the node the actor was placed on when it was released.
	Node string `json:"node"`
	// Token is the orphaned placement's fencing token.
	Token uint64 `json:"token"`
	// Since is the Raft index of the commit that released the actor.
	Since uint64 `json:"since"`
	// Incarnation is the node incarnation that held the placement: only
	// that incarnation's lease guards the actor (a node that rejoined as a
	// new incarnation does not keep it alive).
	Incarnation uint64 `json:"incarnation,omitempty"`
}

// Validate checks non-empty, valid UTF-8 actor and node and non-zero token
// and index. Errors wrap ErrInvalidPlacement.
func (o Orphan) Validate() error {
	switch {
	case o.Actor == "":
		return fmt.Errorf("%w: orphan: empty actor", ErrInvalidPlacement)
	case o.Node == "":
		return fmt.Errorf("%w: orphan %q: empty node", ErrInvalidPlacement, o.Actor)
	case !utf8.ValidString(o.Actor) || !utf8.ValidString(o.Node):
		return fmt.Errorf("%w: orphan %q: id not valid UTF-8", ErrInvalidPlacement, o.Actor)
	case o.Token == 0:
		return fmt.Errorf("%w: orphan %q: token 0", ErrInvalidPlacement, o.Actor)
	case o.Since == 0:
		return fmt.Errorf("%w: orphan %q: index 0", ErrInvalidPlacement, o.Actor)
	}
	return nil
}
