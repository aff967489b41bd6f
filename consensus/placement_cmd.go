package consensus

import (
	"errors"
	"fmt"
	"math"

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
	// Batches name few nodes: look each up in the view once.
	var (
		lastNode string
		last     Member
		active   bool
	)
	for i, it := range b.Items {
		if i == 0 || it.Node != lastNode {
			lastNode = it.Node
			last, active = v.Member(it.Node)
			active = active && last.Status == StatusActive
		}
		if !active {
			if p, ok := tab.Get(it.Actor); ok {
				out[i] = PlaceOutcome{Placement: p, Existing: true}
			} else {
				out[i] = PlaceOutcome{Err: fmt.Errorf("%w: %q", ErrNodeNotActive, it.Node)}
			}
			continue
		}
		p := placement.Placement{Actor: it.Actor, Node: it.Node, Token: index, State: placement.StateActive, Incarnation: last.Incarnation}
		// Insert also clears the actor's orphan record; an actor already
		// placed keeps its placement (Place is idempotent).
		if q, ok := tab.Insert(p); !ok {
			out[i] = PlaceOutcome{Placement: q, Existing: true}
			continue
		}
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

// Place entries are the bulk of the log (up to MaxBatchItems items each),
// and every replica decodes each one. decodePlaceFast parses the exact form
// encoding/json writes for a PlaceBatch of valid IDs,
//
//	{"items":[{"actor":"A","node":"N"},...],"proposed_at":T}
//
// without reflection. It reports false for anything else (other spacing,
// field order, escapes, characters outside IDs, numbers it would have to
// interpret), and DecodeCommand then uses the strict JSON decoder, so the
// accepted language and the results are unchanged.
//
// It allocates little: the actors of one entry share one string (they are
// kept in the placement table, so that memory lives as long as any of
// them is placed), and each distinct node is one string.
func decodePlaceFast(b []byte) (PlaceBatch, bool) {
	const (
		head    = `{"items":[`
		actorK  = `{"actor":"`
		nodeK   = `,"node":"`
		itemEnd = `}`
		tail    = `],"proposed_at":`
	)
	var out PlaceBatch
	if !hasPrefix(b, head) {
		return out, false
	}
	s := b[len(head):]
	// First pass: check the shape, and note where each actor is and which
	// node each item names. The strings are made once the shape is known.
	type span struct{ start, end, node int }
	var spans []span
	actorBytes := 0
	var nodes []string         // distinct nodes, in order of appearance
	var nodeIdx map[string]int // node → index in nodes, once there are many
	for len(s) > 0 && s[0] != ']' {
		if len(spans) > 0 {
			if s[0] != ',' {
				return out, false
			}
			s = s[1:]
		}
		if !hasPrefix(s, actorK) {
			return out, false
		}
		s = s[len(actorK):]
		actor, rest, ok := cutIDBytes(s)
		if !ok || !hasPrefix(rest, nodeK) {
			return out, false
		}
		start := len(b) - len(s)
		actorBytes += len(actor)
		node, rest, ok := cutIDBytes(rest[len(nodeK):])
		if !ok || !hasPrefix(rest, itemEnd) {
			return out, false
		}
		ni := -1
		if nodeIdx == nil {
			for j, n := range nodes {
				if n == string(node) { // compared, not converted: no allocation
					ni = j
					break
				}
			}
		} else if j, ok := nodeIdx[string(node)]; ok {
			ni = j
		}
		if ni < 0 {
			ni = len(nodes)
			nodes = append(nodes, string(node))
			if nodeIdx != nil {
				nodeIdx[nodes[ni]] = ni
			} else if len(nodes) > 16 { // a large cluster: stop scanning
				nodeIdx = make(map[string]int, 2*len(nodes))
				for j, n := range nodes {
					nodeIdx[n] = j
				}
			}
		}
		spans = append(spans, span{start, start + len(actor), ni})
		s = rest[len(itemEnd):]
	}
	if !hasPrefix(s, tail) {
		return out, false
	}
	s = s[len(tail):]
	if len(s) < 2 || s[len(s)-1] != '}' {
		return out, false
	}
	digits := s[:len(s)-1]
	if len(digits) > 19 || (digits[0] == '0' && len(digits) > 1) {
		return out, false // leave long numbers and odd forms to encoding/json
	}
	var t uint64 // 19 digits cannot overflow a uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return out, false
		}
		t = t*10 + uint64(c-'0')
	}
	if t > math.MaxInt64 {
		return out, false
	}
	out.ProposedAtUnixNano = int64(t)
	if len(spans) == 0 {
		return out, true
	}
	buf := make([]byte, 0, actorBytes)
	for _, sp := range spans {
		buf = append(buf, b[sp.start:sp.end]...)
	}
	all := string(buf) // the one copy of every actor
	out.Items = make([]PlaceItem, len(spans))
	off := 0
	for i, sp := range spans {
		n := sp.end - sp.start
		out.Items[i] = PlaceItem{Actor: all[off : off+n], Node: nodes[sp.node]}
		off += n
	}
	return out, true
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// cutIDBytes splits b at the first '"', requiring every byte before it to be
// an ID byte ([A-Za-z0-9._-], which JSON never escapes).
func cutIDBytes(b []byte) (id, rest []byte, ok bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			return b[:i], b[i+1:], true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return nil, nil, false
		}
	}
	return nil, nil, false
}
