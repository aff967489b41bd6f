package placement

import (
	"errors"
	"strconv"
)

// ErrStaleToken means work was stamped with an older fencing token than the
// placement's current one: it was meant for an earlier activation of the
// actor (before a migration or re-placement) and must be refused, not
// retried with the same token. The caller should look the actor up again.
var ErrStaleToken = errors.New("placement: stale fencing token")

// StaleTokenError is the error CheckFence returns; it carries both tokens and
// matches ErrStaleToken with errors.Is.
type StaleTokenError struct {
	Current   uint64 // the token of the current placement
	Presented uint64 // the older token the work carried
}

func (e *StaleTokenError) Error() string {
	return ErrStaleToken.Error() + ": presented " + strconv.FormatUint(e.Presented, 10) +
		", current " + strconv.FormatUint(e.Current, 10)
}

// Unwrap makes errors.Is(err, ErrStaleToken) true.
func (e *StaleTokenError) Unwrap() error { return ErrStaleToken }

// CheckFence returns a *StaleTokenError (wrapping ErrStaleToken) when
// presented < current, and nil otherwise. A presented token newer than the
// current one is accepted here: it means the checker has not yet applied the
// newer placement, and whether to wait for it is the caller's decision.
func CheckFence(current, presented uint64) error {
	if presented < current {
		return &StaleTokenError{Current: current, Presented: presented}
	}
	return nil
}
