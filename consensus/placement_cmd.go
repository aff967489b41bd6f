package consensus

import (
	"errors"
	"fmt"

	"github.com/kelpie/cluster/placement"
)

// Placement commands. The leader chooses nodes (policy, leases) and proposes;
// the FSM only checks what it can check deterministically: the node is
// Active in the committed view at this index (PlacementConsistency, G5), and
// an actor has at most one placement (SingleActivation, G4). The fencing
// token of a placement is the Raft index of the entry that committed it.

const (
	// CmdPlace places a batch of actors (group commit).
	CmdPlace CommandType = 2
	// CmdRelease removes placements, each guarded by its token.
	CmdRelease CommandType = 3
)

// MaxBatchItems bounds the items in one place or release entry, keeping every
// entry well under MaxPayloadSize.
const MaxBatchItems = 4096

// ErrNodeNotActive: the chosen node is not Active in the committed view, so
// the placement was refused (G5). Retry; the leader will choose again.
var ErrNodeNotActive = errors.New("consensus: node is not active in the committed view")

// ErrNotPlaced: a release named an actor that has no placement, or whose
// placement has another token.
var ErrNotPlaced = errors.New("consensus: actor not placed with that token")

// PlaceItem asks for actor to be placed on node.
type PlaceItem struct {
	Actor string `json:"actor"`
	Node  string `json:"node"`
}

// PlaceBatch is the payload of CmdPlace.
type PlaceBatch struct {
	Items              []PlaceItem `json:"items"`
	ProposedAtUnixNano int64       `json:"proposed_at"`
}

// ReleaseItem removes actor's placement if it still has token.
type ReleaseItem struct {
	Actor string `json:"actor"`
	Token uint64 `json:"token"`
}

// ReleaseBatch is the payload of CmdRelease.
type ReleaseBatch struct {
	Items              []ReleaseItem `json:"items"`
	Reason             string        `json:"reason,omitempty"`
	ProposedAtUnixNano int64         `json:"proposed_at"`
}

// PlaceOutcome is the FSM's answer for one PlaceItem (or ReleaseItem).
type PlaceOutcome struct {
	Placement placement.Placement
	// Existing: the actor was already placed; Placement is that placement
	// and the item's node was ignored (Place is idempotent).
	Existing bool
	Err      error
}

func validateBatchLen(n int) error {
	if n == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalidCommand)
	}
	if n > MaxBatchItems {
		return fmt.Errorf("%w: %d items, limit %d", ErrInvalidCommand, n, MaxBatchItems)
	}
	return nil
}

// Validate checks the batch shape (not the view).
func (b PlaceBatch) Validate() error {
	if err := validateBatchLen(len(b.Items)); err != nil {
		return err
	}
	for i, it := range b.Items {
		if err := validateID(it.Actor); err != nil {
			return fmt.Errorf("%w: item %d actor: %v", ErrInvalidCommand, i, err)
		}
		if err := validateID(it.Node); err != nil {
			return fmt.Errorf("%w: item %d node: %v", ErrInvalidCommand, i, err)
		}
	}
	return nil
}

func (b *PlaceBatch) value() any { return *b }

// Validate checks the batch shape.
func (b ReleaseBatch) Validate() error {
	if err := validateBatchLen(len(b.Items)); err != nil {
		return err
	}
	for i, it := range b.Items {
		if err := validateID(it.Actor); err != nil {
			return fmt.Errorf("%w: item %d actor: %v", ErrInvalidCommand, i, err)
		}
		if it.Token == 0 {
			return fmt.Errorf("%w: item %d: token 0", ErrInvalidCommand, i)
		}
	}
	return nil
}

func (b *ReleaseBatch) value() any { return *b }

// EncodePlace encodes a CmdPlace entry.
func EncodePlace(b PlaceBatch) ([]byte, error) { return Encode(CmdPlace, b) }

// EncodeRelease encodes a CmdRelease entry.
func EncodeRelease(b ReleaseBatch) ([]byte, error) { return Encode(CmdRelease, b) }

// applyPlace places each item against view v at index. tab is modified in
// place (the caller holds the write lock).
func applyPlace(tab *placement.Table, v View, b PlaceBatch, index uint64) []PlaceOutcome {
	out := make([]PlaceOutcome, len(b.Items))
	for i, it := range b.Items {
		if p, ok := tab.Get(it.Actor); ok {
			out[i] = PlaceOutcome{Placement: p, Existing: true}
			continue
		}
		m, ok := v.Member(it.Node)
		if !ok || m.Status != StatusActive {
			out[i] = PlaceOutcome{Err: fmt.Errorf("%w: %q", ErrNodeNotActive, it.Node)}
			continue
		}
		p := placement.Placement{Actor: it.Actor, Node: it.Node, Token: index, State: placement.StateActive, Incarnation: m.Incarnation}
		tab.Put(p) // also clears the actor's orphan record
		out[i] = PlaceOutcome{Placement: p}
	}
	return out
}

// applyRelease removes each placement whose token matches.
func applyRelease(tab *placement.Table, b ReleaseBatch) []PlaceOutcome {
	out := make([]PlaceOutcome, len(b.Items))
	for i, it := range b.Items {
		p, ok := tab.Get(it.Actor)
		if !ok || p.Token != it.Token {
			out[i] = PlaceOutcome{Err: fmt.Errorf("%w: %q token %d", ErrNotPlaced, it.Actor, it.Token)}
			continue
		}
		if p.State == placement.StateMigrating {
			out[i] = PlaceOutcome{Err: fmt.Errorf("%w: %q", ErrMigrating, it.Actor)}
			continue
		}
		tab.Delete(it.Actor)
		out[i] = PlaceOutcome{Placement: p}
	}
	return out
}

// releaseGone releases the placements of every member that the view change
// from old to next took out of Active service (Failed or Left), recording
// them as orphans: the leader re-places them only once the owner's lease has
// surely expired. It reports whether it released anything.
func releaseGone(tab *placement.Table, old, next View, index uint64) bool {
	released := false
	for _, m := range next.Members {
		if m.Status != StatusFailed && m.Status != StatusLeft && m.Status != StatusJoining {
			continue
		}
		if prev, ok := old.Member(m.ID); ok && prev.Status == m.Status && prev.Incarnation == m.Incarnation {
			continue
		}
		if len(tab.ReleaseNode(m.ID, index)) > 0 {
			released = true
		}
	}
	return released
}
