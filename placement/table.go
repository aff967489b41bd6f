package placement

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Table is the committed placement table: actor → Placement, an index of the
// actors on each node (so Count is O(1) and ReleaseNode touches only that
// node's actors), and the orphans awaiting lease expiry.
//
// An actor is either placed or orphaned, never both: Put clears the actor's
// orphan record and Orphan removes the actor's placement.
//
// The per-node index is a slice of actors per node, and each placement
// records its position in that slice: placing an actor is one insertion into
// one large map (the table holds millions of actors and is updated on every
// replica for every placement), where a set per node would be a second one.
// The order of a node's slice depends on history; nothing observable does
// (ByNode and ReleaseNode sort).
//
// The zero Table is empty and ready to use. A Table is not safe for
// concurrent use; callers lock (see the package documentation).
type Table struct {
	placements map[string]entry
	byNode     map[string]*nodeActors // no empty ones
	orphans    map[string]Orphan
}

// entry is a placement without its actor (the map key) and its position in
// its node's actor slice: 48 bytes rather than a Placement's 64 plus the
// position, which keeps the largest map of a replica a third smaller.
type entry struct {
	node        string
	token       uint64
	incarnation uint64
	migration   uint64
	pos         int32
	state       State
}

func (e *entry) placement(actor string) Placement {
	return Placement{Actor: actor, Node: e.node, Token: e.token, State: e.state, Incarnation: e.incarnation, Migration: e.migration}
}

func newEntry(p Placement, pos int) entry {
	return entry{node: p.Node, token: p.Token, incarnation: p.Incarnation, migration: p.Migration, pos: int32(pos), state: p.State}
}

// nodeActors lists the actors placed on one node, in no particular order.
type nodeActors struct{ actors []string }

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	t.init()
	return t
}

func (t *Table) init() {
	if t.placements == nil {
		t.placements = make(map[string]entry)
		t.byNode = make(map[string]*nodeActors)
		t.orphans = make(map[string]Orphan)
	}
}

// Get returns the placement of actor, if it is placed.
func (t *Table) Get(actor string) (Placement, bool) {
	var p Placement
	ok := t.GetInto(actor, &p)
	return p, ok
}

// GetInto is Get writing into *p (left untouched when the actor has no
// placement): the local-lookup path copies the record once instead of
// twice.
func (t *Table) GetInto(actor string, p *Placement) bool {
	e, ok := t.placements[actor]
	if !ok {
		return false
	}
	p.Actor, p.Node, p.Token, p.State = actor, e.node, e.token, e.state
	p.Incarnation, p.Migration = e.incarnation, e.migration
	return true
}

// Put inserts p, or replaces the actor's existing placement (moving it
// between nodes' counts if the node changed), and clears any orphan record of
// the actor. Put does not validate p; callers validate commands before
// applying them (Placement.Validate), and MarshalJSON refuses to encode an
// invalid placement.
func (t *Table) Put(p Placement) {
	t.init()
	if old, ok := t.placements[p.Actor]; ok {
		if old.node == p.Node {
			t.placements[p.Actor] = newEntry(p, int(old.pos))
			t.clearOrphan(p.Actor)
			return
		}
		t.unindex(old.node, int(old.pos))
	}
	t.add(p)
}

// Insert places p unless its actor is already placed, in which case it
// changes nothing and returns the existing placement and false. It is Get
// followed by Put for an actor that is not placed, with one lookup fewer.
func (t *Table) Insert(p Placement) (Placement, bool) {
	t.init()
	if old, ok := t.placements[p.Actor]; ok {
		return old.placement(p.Actor), false
	}
	t.add(p)
	return p, true
}

// add places p, whose actor must not be placed.
func (t *Table) add(p Placement) {
	na := t.byNode[p.Node]
	if na == nil {
		na = &nodeActors{}
		t.byNode[p.Node] = na
	}
	t.placements[p.Actor] = newEntry(p, len(na.actors))
	na.actors = append(na.actors, p.Actor)
	t.clearOrphan(p.Actor)
}

func (t *Table) clearOrphan(actor string) {
	if len(t.orphans) > 0 {
		delete(t.orphans, actor)
	}
}

// unindex removes the actor at pos from node's actors, moving the node's
// last actor into its slot; it does not touch the actor's own entry.
func (t *Table) unindex(node string, pos int) {
	na := t.byNode[node]
	last := len(na.actors) - 1
	if pos != last {
		moved := na.actors[last]
		na.actors[pos] = moved
		me := t.placements[moved]
		me.pos = int32(pos)
		t.placements[moved] = me
	}
	na.actors[last] = "" // no reference kept past the length
	na.actors = na.actors[:last]
	switch {
	case last == 0:
		delete(t.byNode, node)
	case cap(na.actors) > 64 && last < cap(na.actors)/4:
		na.actors = append([]string(nil), na.actors...) // give memory back after a drain
	}
}

// Delete removes the placement of actor and returns it. It does not record
// an orphan; see Orphan and ReleaseNode for that.
func (t *Table) Delete(actor string) (Placement, bool) {
	e, ok := t.placements[actor]
	if !ok {
		return Placement{}, false
	}
	t.unindex(e.node, int(e.pos))
	delete(t.placements, actor)
	return e.placement(actor), true
}

// Len returns the number of placed actors (orphans not included).
func (t *Table) Len() int { return len(t.placements) }

// Count returns the number of actors placed on node, in O(1). Its signature
// fits Choose's load function: Choose(req, nodes, t.Count).
func (t *Table) Count(node string) int {
	if na := t.byNode[node]; na != nil {
		return len(na.actors)
	}
	return 0
}

// ByNode returns the placements on node, sorted by Actor (nil if none).
func (t *Table) ByNode(node string) []Placement {
	na := t.byNode[node]
	if na == nil {
		return nil
	}
	out := make([]Placement, 0, len(na.actors))
	for _, actor := range na.actors {
		e := t.placements[actor]
		out = append(out, e.placement(actor))
	}
	sortPlacements(out)
	return out
}

// All returns every placement, sorted by Actor (nil if none).
func (t *Table) All() []Placement {
	if len(t.placements) == 0 {
		return nil
	}
	out := make([]Placement, 0, len(t.placements))
	for actor, e := range t.placements {
		out = append(out, e.placement(actor))
	}
	sortPlacements(out)
	return out
}

// Orphan records o, replacing any earlier orphan record of o.Actor, and
// removes the actor's placement if it has one: an orphan is by definition
// not placed. Like Put it does not validate.
func (t *Table) Orphan(o Orphan) {
	t.init()
	t.Delete(o.Actor)
	t.orphans[o.Actor] = o
}

// GetOrphan returns the orphan record of actor, if any.
func (t *Table) GetOrphan(actor string) (Orphan, bool) {
	o, ok := t.orphans[actor]
	return o, ok
}

// ClearOrphan forgets the orphan record of actor (no-op if none), typically
// once its lease has surely expired and it has been re-placed or dropped.
func (t *Table) ClearOrphan(actor string) { delete(t.orphans, actor) }

// NumOrphans returns the number of orphan records, in O(1).
func (t *Table) NumOrphans() int { return len(t.orphans) }

// Orphans returns every orphan record, sorted by Actor (nil if none).
func (t *Table) Orphans() []Orphan {
	if len(t.orphans) == 0 {
		return nil
	}
	out := make([]Orphan, 0, len(t.orphans))
	for _, o := range t.orphans {
		out = append(out, o)
	}
	sortOrphans(out)
	return out
}

// ReleaseNode removes every placement on node (whatever its state), records
// each as an Orphan{Token: its token, Since: index}, and returns the new
// orphans sorted by Actor (nil if the node had none). index is the Raft index
// of the commit that releases the node.
func (t *Table) ReleaseNode(node string, index uint64) []Orphan {
	na := t.byNode[node]
	if na == nil {
		return nil
	}
	out := make([]Orphan, 0, len(na.actors))
	for _, actor := range na.actors {
		e := t.placements[actor]
		p := e.placement(actor)
		out = append(out, Orphan{Actor: actor, Node: node, Token: p.Token, Since: index, Incarnation: p.Incarnation})
	}
	sortOrphans(out)
	delete(t.byNode, node)
	for _, o := range out {
		delete(t.placements, o.Actor)
		t.orphans[o.Actor] = o
	}
	return out
}

// Clone returns a deep copy of t that shares nothing with it.
func (t *Table) Clone() *Table {
	c := &Table{
		placements: make(map[string]entry, len(t.placements)),
		byNode:     make(map[string]*nodeActors, len(t.byNode)),
		orphans:    make(map[string]Orphan, len(t.orphans)),
	}
	for k, v := range t.placements {
		c.placements[k] = v
	}
	for node, na := range t.byNode {
		c.byNode[node] = &nodeActors{actors: append([]string(nil), na.actors...)}
	}
	for k, v := range t.orphans {
		c.orphans[k] = v
	}
	return c
}

// Equal reports whether t and o hold the same placements and orphans. A nil
// table equals only nil.
func (t *Table) Equal(o *Table) bool {
	if t == nil || o == nil {
		return t == o
	}
	if len(t.placements) != len(o.placements) || len(t.orphans) != len(o.orphans) {
		return false
	}
	for k, v := range t.placements {
		if w, ok := o.placements[k]; !ok || w.placement(k) != v.placement(k) {
			return false
		}
	}
	for k, v := range t.orphans {
		if w, ok := o.orphans[k]; !ok || w != v {
			return false
		}
	}
	// The per-node index is derived from the placements, so it is equal too.
	return true
}

// tableJSON is the snapshot encoding. Both lists are sorted by Actor, and are
// [] rather than null when empty, so equal tables encode to identical bytes.
type tableJSON struct {
	Placements []Placement `json:"placements"`
	Orphans    []Orphan    `json:"orphans"`
}

// MarshalJSON encodes t deterministically as
// {"placements":[...],"orphans":[...]}, each list sorted by Actor. It fails
// (wrapping ErrInvalidPlacement) if the table holds an entry UnmarshalJSON
// would reject, so every snapshot it writes can be restored.
func (t *Table) MarshalJSON() ([]byte, error) {
	w := tableJSON{Placements: t.All(), Orphans: t.Orphans()}
	if w.Placements == nil {
		w.Placements = []Placement{}
	}
	if w.Orphans == nil {
		w.Orphans = []Orphan{}
	}
	for _, p := range w.Placements {
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	for _, o := range w.Orphans {
		if err := o.Validate(); err != nil {
			return nil, err
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON replaces t's contents with the decoded snapshot. It is
// strict: unknown fields, trailing data, invalid entries (Placement.Validate,
// Orphan.Validate), an actor listed twice, or an actor both placed and
// orphaned are rejected with an error wrapping ErrInvalidPlacement (or a JSON
// syntax/type error), and then t is left unchanged. Entries need not be
// sorted. As encoding/json expects, the literal null is a no-op.
func (t *Table) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	var w tableJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPlacement, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after table", ErrInvalidPlacement)
	}
	n := NewTable()
	for _, p := range w.Placements {
		if err := p.Validate(); err != nil {
			return err
		}
		if _, dup := n.placements[p.Actor]; dup {
			return fmt.Errorf("%w: actor %q placed twice", ErrInvalidPlacement, p.Actor)
		}
		n.Put(p)
	}
	for _, o := range w.Orphans {
		if err := o.Validate(); err != nil {
			return err
		}
		if _, dup := n.orphans[o.Actor]; dup {
			return fmt.Errorf("%w: actor %q orphaned twice", ErrInvalidPlacement, o.Actor)
		}
		if _, placed := n.placements[o.Actor]; placed {
			return fmt.Errorf("%w: actor %q both placed and orphaned", ErrInvalidPlacement, o.Actor)
		}
		n.orphans[o.Actor] = o
	}
	*t = *n
	return nil
}

func sortPlacements(ps []Placement) {
	slices.SortFunc(ps, func(a, b Placement) int { return strings.Compare(a.Actor, b.Actor) })
}

func sortOrphans(os []Orphan) {
	slices.SortFunc(os, func(a, b Orphan) int { return strings.Compare(a.Actor, b.Actor) })
}
