package placement

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidLeaseConfig is returned (wrapped) by LeaseConfig.Validate.
// It is a configuration error; fix the configuration.
var ErrInvalidLeaseConfig = errors.New("placement: invalid lease config")

// MinLeaseDuration is the shortest lease Validate accepts. With renewals
// every Duration/3 it gives a 100 ms renewal interval; a renewal is a round
// trip to the leader, which must verify its leadership with a quorum before
// granting, and a shorter lease would let one GC pause or scheduling hiccup
// make healthy nodes fence themselves.
const MinLeaseDuration = 300 * time.Millisecond

// LeaseConfig holds the membership-lease timings (G6 LeaseSafety).
//
// Two clocks are involved and are never compared with each other: the holder
// measures its own lease on its own monotonic clock (HolderExpiry), and the
// leader measures "surely expired" on its own (SurelyExpired). Margin is what
// makes the two agree in the right direction despite rate drift between the
// clocks and processing delay.
type LeaseConfig struct {
	// Duration is the lease length. Default 4s; at least MinLeaseDuration.
	// Longer leases survive longer pauses and leader elections without
	// spurious self-fencing, but delay re-placement of a failed node's
	// actors by as much.
	Duration time.Duration
	// Margin is added by the leader before it treats a lease as surely
	// expired: it covers clock-rate drift between holder and leader over
	// one lease, and the time between the holder's deadline and it actually
	// having deactivated its actors. Default 500ms (12.5% of the default
	// lease: 0.1% drift over 4s needs 8ms, and the holder starts fencing
	// ahead of its deadline, so the rest is room for a slow deactivation). 0 ≤ Margin < Duration: a negative margin would let the
	// leader re-place actors the holder may still serve; a margin as long
	// as the lease itself almost certainly means a unit mistake, and would
	// more than double the failover time.
	Margin time.Duration
}

// DefaultLeaseConfig returns Duration 4s (renewed every 1.33s, so two
// renewals can be lost before a healthy node fences itself) and Margin
// 500ms (see LeaseConfig.Margin). A failed node's actors are re-placed at
// the earliest 4.5s after the leader last granted it a lease, so a crashed
// owner's actors are back within 3.2-4.5s (renewals are 1.33s apart).
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{Duration: 4 * time.Second, Margin: 500 * time.Millisecond}
}

// Validate checks MinLeaseDuration ≤ Duration and 0 ≤ Margin < Duration,
// without modifying c (zero values are not replaced by defaults). Errors
// wrap ErrInvalidLeaseConfig.
func (c LeaseConfig) Validate() error {
	switch {
	case c.Duration < MinLeaseDuration:
		return fmt.Errorf("%w: Duration %v is below the minimum %v", ErrInvalidLeaseConfig, c.Duration, MinLeaseDuration)
	case c.Margin < 0:
		return fmt.Errorf("%w: Margin %v is negative", ErrInvalidLeaseConfig, c.Margin)
	case c.Margin >= c.Duration:
		return fmt.Errorf("%w: Margin %v must be shorter than Duration %v", ErrInvalidLeaseConfig, c.Margin, c.Duration)
	}
	return nil
}

// RenewInterval is how often a holder renews: Duration/3, so a lease
// survives two consecutive lost renewals.
func (c LeaseConfig) RenewInterval() time.Duration { return c.Duration / 3 }

// HolderExpiry is when the holder must consider its lease over: Duration
// after it SENT the renewal that was granted, on its own monotonic clock.
// Counting from the send, not from the reply, makes the holder's lease end
// no later than the leader's view of it (the grant happens after the send).
// By then the holder must have deactivated every local actor.
func (c LeaseConfig) HolderExpiry(sentAt time.Time) time.Time { return sentAt.Add(c.Duration) }

// HolderValid reports whether a holder whose latest granted renewal was sent
// at sentAt may still serve at now (both on the holder's clock):
// now < HolderExpiry(sentAt).
func (c LeaseConfig) HolderValid(sentAt, now time.Time) bool {
	return now.Before(c.HolderExpiry(sentAt))
}

// never is the latest representable time: "not at any time".
var never = time.Unix(1<<63-1-62135596800, 999999999).UTC()

// SurelyExpiredAt is when the leader may treat a node's lease as surely
// expired: max(lastGrant, electedAt) + Duration + Margin, all on the leader's
// clock. lastGrant is the leader's last grant to the node and may be zero
// (this leader never granted it one); electedAt is when this leader took
// office, because an earlier leader may have granted a lease just before.
//
// electedAt must not be zero: the leader cannot know what its predecessors
// granted, so a zero electedAt gets the only safe answer, "never" (the
// latest representable time).
func (c LeaseConfig) SurelyExpiredAt(lastGrant, electedAt time.Time) time.Time {
	if electedAt.IsZero() {
		return never
	}
	from := electedAt
	if lastGrant.After(from) {
		from = lastGrant
	}
	return from.Add(c.Duration + c.Margin)
}

// SurelyExpired is the leader's test before re-placing a node's actors:
// now >= SurelyExpiredAt(lastGrant, electedAt). It is false whenever
// electedAt is zero.
func (c LeaseConfig) SurelyExpired(lastGrant, electedAt, now time.Time) bool {
	if electedAt.IsZero() {
		return false
	}
	return !now.Before(c.SurelyExpiredAt(lastGrant, electedAt))
}
