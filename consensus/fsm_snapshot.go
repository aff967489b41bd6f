package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/placement"
)

// SnapshotVersion is the "version" field of the FSM snapshot document.
// Restore refuses any other version.
const SnapshotVersion = 1

// ErrInvalidSnapshot means a snapshot could not be restored: it is not a
// well-formed snapshot document of a known version, or its contents break an
// invariant of the view. The FSM state is left unchanged. Retrying the same
// snapshot never helps.
var ErrInvalidSnapshot = errors.New("consensus: invalid snapshot")

// snapshotDoc is the on-disk form of an FSM snapshot. It is self-describing
// JSON so that operators can inspect it and future versions can migrate it.
type snapshotDoc struct {
	Version int      `json:"version"`
	Epoch   uint64   `json:"epoch"`
	Index   uint64   `json:"index"`   // View.Index
	Applied uint64   `json:"applied"` // last applied Raft index
	Members []Member `json:"members"` // sorted by ID, unique
	// Table is the placement table (placements and orphans).
	Table *placement.Table `json:"table"`
	// Migrations running (sorted by actor) and finished (oldest first).
	Migrations        []Migration `json:"migrations"`
	MigrationsHistory []Migration `json:"migrations_history"`
}

// fsmSnapshot is a point-in-time copy of the FSM state. Members is shared
// with the FSM, which never modifies a published slice in place.
type fsmSnapshot struct {
	doc snapshotDoc
}

var _ raft.FSMSnapshot = (*fsmSnapshot)(nil)

// Snapshot captures the state at call time. It is O(1): the encoding happens
// in Persist, which raft may run concurrently with later Applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.mu.view
	members := v.Members
	if members == nil {
		members = []Member{} // encode as [], not null
	}
	return &fsmSnapshot{doc: snapshotDoc{
		Version:           SnapshotVersion,
		Epoch:             v.Epoch,
		Index:             v.Index,
		Applied:           f.mu.applied,
		Members:           members,
		Table:             f.mu.tab.Clone(), // O(placements); the table is modified in place
		Migrations:        runningList(f.mu.migs),
		MigrationsHistory: append([]Migration{}, f.mu.migs.history...),
	}}, nil
}

// Persist writes the snapshot document to sink and closes it, or cancels the
// sink on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := json.Marshal(s.doc)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}

// Restore replaces the FSM state with the snapshot read from r. The snapshot
// is fully read and validated first; if it is invalid the state is left
// unchanged and the error wraps ErrInvalidSnapshot. A successful restore
// wakes Watch callers. Restore does not close r (raft does).
func (f *FSM) Restore(r io.ReadCloser) error {
	doc, err := decodeSnapshot(r)
	if err != nil {
		return err
	}
	v := View{Epoch: doc.Epoch, Index: doc.Index, Members: doc.Members}
	if len(v.Members) == 0 {
		v.Members = nil // same shape as a view that never had members
	}

	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.view = v
	f.mu.applied = doc.Applied
	f.mu.tab = doc.Table
	f.mu.migs = newMigState()
	for _, m := range doc.Migrations {
		f.mu.migs.running[m.Actor] = m
	}
	f.mu.migs.history = doc.MigrationsHistory
	close(f.mu.changed)
	f.mu.changed = make(chan struct{})
	f.placementsChangedLocked()
	return nil
}

// decodeSnapshot reads and validates one snapshot document from r.
func decodeSnapshot(r io.Reader) (snapshotDoc, error) {
	var doc snapshotDoc
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return snapshotDoc{}, fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	if err := expectEOF(dec); err != nil {
		return snapshotDoc{}, fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	if err := doc.validate(); err != nil {
		return snapshotDoc{}, fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	return doc, nil
}

// validate checks the invariants every FSM-produced snapshot satisfies.
func (d *snapshotDoc) validate() error {
	if d.Version != SnapshotVersion {
		return fmt.Errorf("unknown version %d (want %d)", d.Version, SnapshotVersion)
	}
	if d.Epoch == 0 && (len(d.Members) != 0 || d.Index != 0) {
		return errors.New("epoch 0 must have no members and index 0")
	}
	for i, m := range d.Members {
		if err := validateID(m.ID); err != nil {
			return fmt.Errorf("member %d: %v", i, err)
		}
		if i > 0 && d.Members[i-1].ID >= m.ID {
			return fmt.Errorf("member %d: id %q not after %q (members must be sorted and unique)", i, m.ID, d.Members[i-1].ID)
		}
		if m.Status < StatusJoining || m.Status > StatusLeft {
			return fmt.Errorf("member %q: invalid status %s", m.ID, m.Status)
		}
		if m.Role != RoleServer && m.Role != RoleClient {
			return fmt.Errorf("member %q: unknown role %q", m.ID, m.Role)
		}
		if m.Incarnation == 0 {
			return fmt.Errorf("member %q: incarnation 0 (every member joined at least once)", m.ID)
		}
		if m.UpdatedEpoch == 0 || m.UpdatedEpoch > d.Epoch {
			return fmt.Errorf("member %q: updated_epoch %d outside [1, %d]", m.ID, m.UpdatedEpoch, d.Epoch)
		}
	}
	if d.Table == nil {
		return errors.New("missing placement table")
	}
	v := View{Members: d.Members}
	for _, p := range d.Table.All() {
		m, ok := v.Member(p.Node)
		if !ok || (m.Status != StatusActive && m.Status != StatusLeaving) || m.Incarnation != p.Incarnation {
			return fmt.Errorf("placement of %q points at %q, which is not an active member of that incarnation (PlacementConsistency)", p.Actor, p.Node)
		}
		if p.Token > d.Applied {
			return fmt.Errorf("placement of %q has token %d beyond applied index %d", p.Actor, p.Token, d.Applied)
		}
	}
	seen := map[string]bool{}
	for _, m := range d.Migrations {
		p, ok := d.Table.Get(m.Actor)
		if seen[m.Actor] || !ok || p.State != placement.StateMigrating || p.Node != m.From || m.State != MigrationRunning {
			return fmt.Errorf("migration of %q does not match a migrating placement", m.Actor)
		}
		seen[m.Actor] = true
	}
	if len(d.MigrationsHistory) > migrationHistory {
		return fmt.Errorf("%d finished migrations, limit %d", len(d.MigrationsHistory), migrationHistory)
	}
	return nil
}

func runningList(s *migState) []Migration {
	out := []Migration{}
	for _, a := range sortedKeys(s.running) {
		out = append(out, s.running[a])
	}
	return out
}
