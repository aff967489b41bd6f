package consensus

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/placement"
)

// ErrIllegalTransition means a view change asked for a status transition that
// LegalTransition forbids. The whole command was rejected and nothing changed.
// It is returned as a *TransitionError carrying the member and the statuses.
// Do not retry the same command; re-read the view and propose a legal change.
var ErrIllegalTransition = errors.New("consensus: illegal status transition")

// ErrNoChange means a view change was valid but every change in it was
// already reflected in the view, so no new epoch was committed. Callers that
// only need the target state to hold can treat it as success.
var ErrNoChange = errors.New("consensus: view change changes nothing")

// TransitionError describes the first illegal change of a rejected command.
// errors.Is(err, ErrIllegalTransition) holds for it.
type TransitionError struct {
	ID   string // member ID
	From Status // status before the change (StatusNone for an unknown ID)
	To   Status // requested status
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("%v: member %q: %s -> %s", ErrIllegalTransition, e.ID, e.From, e.To)
}

// Unwrap makes errors.Is(err, ErrIllegalTransition) true.
func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// ApplyResult is what FSM.Apply returns (raft hands it back as
// ApplyFuture.Response()). It is never nil.
type ApplyResult struct {
	Index uint64 // Raft index of the applied log entry
	Epoch uint64 // view epoch after the entry (unchanged if Err != nil)
	// Err is nil when the entry was applied (or was not a command), wraps
	// ErrNoChange when it was valid but changed nothing, is a
	// *TransitionError (ErrIllegalTransition) when it was rejected, and wraps
	// ErrInvalidCommand when the bytes did not decode or validate.
	Err error
	// Place holds one outcome per item of a CmdPlace or CmdRelease entry
	// (nil for other commands or when Err is set).
	Place []PlaceOutcome
	// Migration is the record a migration command produced (nil otherwise).
	Migration *Migration
}

// FSM is the deterministic Raft state machine holding the committed
// membership view. It implements raft.FSM.
//
// Apply, Snapshot and Restore are called by raft on one goroutine; View,
// AppliedIndex and Watch may be called from any goroutine at any time. The
// FSM never reads a clock or a random source and never depends on map
// iteration order, so every replica that applies the same log reaches the
// same view.
type FSM struct {
	// wmu serialises writers (Apply, Restore). Raft already calls them from
	// one goroutine; wmu makes misuse safe rather than racy. Writers read
	// state under wmu alone and take mu only to publish.
	wmu sync.Mutex

	mu struct {
		sync.RWMutex
		// view is the committed view. Its Members slice is never modified
		// in place after publication (writers build a new slice), so a
		// snapshot may keep a reference to it.
		view    View
		applied uint64        // index of the last log entry applied
		changed chan struct{} // closed and replaced when view changes
		// tab is the placement table. Unlike the view it is modified in
		// place, under the write lock; readers copy what they need.
		tab *placement.Table
		// pchanged is closed and replaced when placements change.
		pchanged chan struct{}
		// migs holds running and recently finished migrations.
		migs *migState
	}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM holding the empty view (epoch 0).
func NewFSM() *FSM {
	f := &FSM{}
	f.mu.changed = make(chan struct{})
	f.mu.pchanged = make(chan struct{})
	f.mu.tab = placement.NewTable()
	f.mu.migs = newMigState()
	return f
}

// View returns a deep copy of the committed view.
func (f *FSM) View() View {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.view.Clone()
}

// AppliedIndex returns the Raft index of the last log entry applied,
// including entries that were rejected, were no-ops or were not commands.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.applied
}

// Watch returns the current view and a channel that is closed when the view
// next changes (a new epoch is committed, or a snapshot is restored). It is
// the building block for blocking queries: read, then wait on the channel.
func (f *FSM) Watch() (View, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.view.Clone(), f.mu.changed
}

// ApplyCommand applies an encoded command as if Raft had committed it at
// index. It is Apply without a raft.Log, for callers outside this package
// (tests and tools) that must not import hashicorp/raft.
func (f *FSM) ApplyCommand(index uint64, data []byte) *ApplyResult {
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult)
}

// Apply applies one committed log entry. Only raft.LogCommand entries carry
// commands; others are recorded as applied and otherwise ignored. The result
// is always a non-nil *ApplyResult.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.wmu.Lock()
	defer f.wmu.Unlock()

	cur := f.mu.view // safe: only writers modify it, and they hold wmu
	if l == nil {
		return &ApplyResult{Epoch: cur.Epoch, Err: fmt.Errorf("%w: nil log entry", ErrInvalidCommand)}
	}
	res := &ApplyResult{Index: l.Index, Epoch: cur.Epoch}
	if l.Type != raft.LogCommand {
		f.publish(l.Index, nil)
		return res
	}
	t, p, err := DecodeCommand(l.Data)
	if err != nil {
		res.Err = err
		f.publish(l.Index, nil)
		return res
	}
	switch t {
	case CmdViewChange:
		v, err := applyViewChange(cur, p.(ViewChange), l.Index)
		if err != nil {
			res.Err = err
			f.publish(l.Index, nil)
			return res
		}
		res.Epoch = v.Epoch
		f.mu.Lock()
		released := releaseGone(f.mu.tab, cur, v, l.Index)
		aborted := abortGone(f.mu.tab, f.mu.migs, l.Index, p.(ViewChange).ProposedAtUnixNano)
		if released || aborted {
			f.placementsChangedLocked()
		}
		f.mu.Unlock()
		f.publish(l.Index, &v)
	case CmdPlace:
		f.mu.Lock()
		res.Place = applyPlace(f.mu.tab, cur, p.(PlaceBatch), l.Index)
		f.placementsChangedLocked()
		f.mu.Unlock()
		f.publish(l.Index, nil)
	case CmdRelease:
		f.mu.Lock()
		res.Place = applyRelease(f.mu.tab, p.(ReleaseBatch))
		f.placementsChangedLocked()
		f.mu.Unlock()
		f.publish(l.Index, nil)
	case CmdMigrationStart, CmdMigrationCommit, CmdMigrationAbort:
		f.mu.Lock()
		var m Migration
		var err error
		switch t {
		case CmdMigrationStart:
			m, err = applyMigrationStart(f.mu.tab, f.mu.migs, cur, p.(MigrationStart), l.Index)
		case CmdMigrationCommit:
			m, err = applyMigrationCommit(f.mu.tab, f.mu.migs, cur, p.(MigrationEnd), l.Index)
		default:
			m, err = applyMigrationAbort(f.mu.tab, f.mu.migs, cur, p.(MigrationEnd), l.Index)
		}
		if err != nil {
			res.Err = err
		} else {
			res.Migration = &m
			f.placementsChangedLocked()
		}
		f.mu.Unlock()
		f.publish(l.Index, nil)
	default:
		// Unreachable while DecodeCommand and this switch agree.
		res.Err = fmt.Errorf("%w: no handler for %s", ErrInvalidCommand, t)
		f.publish(l.Index, nil)
	}
	return res
}

func (f *FSM) placementsChangedLocked() {
	close(f.mu.pchanged)
	f.mu.pchanged = make(chan struct{})
}

// Placement returns the committed placement of actor and the applied index
// it reflects.
func (f *FSM) Placement(actor string) (p placement.Placement, ok bool, applied uint64) {
	f.mu.RLock()
	ok = f.mu.tab.GetInto(actor, &p) // cannot panic: no defer needed on this hot path
	applied = f.mu.applied
	f.mu.RUnlock()
	return p, ok, applied
}

// Orphan returns the orphan record of actor, if any.
func (f *FSM) Orphan(actor string) (placement.Orphan, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.tab.GetOrphan(actor)
}

// PlacementsByNode returns node's placements sorted by actor, and the applied
// index they reflect.
func (f *FSM) PlacementsByNode(node string) ([]placement.Placement, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.tab.ByNode(node), f.mu.applied
}

// Placements returns every placement sorted by actor, and the applied index.
func (f *FSM) Placements() ([]placement.Placement, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.tab.All(), f.mu.applied
}

// PlacementCount returns how many actors node hosts (for the policy).
func (f *FSM) PlacementCount(node string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.tab.Count(node)
}

// PlacementLoads returns the placement count of each listed node.
func (f *FSM) PlacementLoads(nodes []string) map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int, len(nodes))
	for _, n := range nodes {
		out[n] = f.mu.tab.Count(n)
	}
	return out
}

// Migrations returns the running migrations (sorted by actor) and the
// finished ones still remembered (oldest first).
func (f *FSM) Migrations() (running, finished []Migration) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, a := range sortedKeys(f.mu.migs.running) {
		running = append(running, f.mu.migs.running[a])
	}
	return running, append([]Migration(nil), f.mu.migs.history...)
}

// RunningMigration returns actor's running migration, if any.
func (f *FSM) RunningMigration(actor string) (Migration, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.mu.migs.running[actor]
	return m, ok
}

// WatchPlacements returns a channel closed when placements next change.
func (f *FSM) WatchPlacements() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.pchanged
}

// publish records applied as the last applied index and, if next is not nil,
// installs it as the view and wakes watchers.
func (f *FSM) publish(applied uint64, next *View) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.applied = applied
	if next != nil {
		f.mu.view = *next
		close(f.mu.changed)
		f.mu.changed = make(chan struct{})
	}
}

// applyViewChange applies vc, committed at Raft index index, to cur and
// returns the resulting view. cur is not modified. It returns a
// *TransitionError if any change is illegal and an error wrapping
// ErrNoChange if no change alters the view; in both cases the returned view
// is meaningless.
func applyViewChange(cur View, vc ViewChange, index uint64) (View, error) {
	if err := vc.Validate(); err != nil {
		return View{}, err
	}
	epoch := cur.Epoch + 1
	members := append([]Member(nil), cur.Members...) // working copy
	changed := false
	for _, c := range vc.Changes {
		want := c.Member
		i := sort.Search(len(members), func(i int) bool { return members[i].ID >= want.ID })
		found := i < len(members) && members[i].ID == want.ID
		old := Member{ID: want.ID, Status: StatusNone}
		if found {
			old = members[i]
		}

		m := old
		setMetadata(&m, want)
		if want.Status == old.Status {
			if m == old {
				continue // identical: no-op for this change
			}
		} else {
			if !LegalTransition(old.Status, want.Status) {
				return View{}, &TransitionError{ID: want.ID, From: old.Status, To: want.Status}
			}
			m.Status = want.Status
			if want.Status == StatusJoining {
				m.Incarnation = old.Incarnation + 1
				m.JoinedAt = index
			}
		}
		m.UpdatedAt = index
		m.UpdatedEpoch = epoch
		m.Reason = vc.Reason
		changed = true

		if found {
			members[i] = m
		} else {
			members = append(members, Member{})
			copy(members[i+1:], members[i:])
			members[i] = m
		}
	}
	if !changed {
		return View{}, fmt.Errorf("%w (epoch %d)", ErrNoChange, cur.Epoch)
	}
	return View{Epoch: epoch, Index: index, Members: members}, nil
}

// setMetadata copies the proposer-owned descriptive fields of src into dst.
// Status and the FSM-owned bookkeeping fields are left alone.
func setMetadata(dst *Member, src Member) {
	dst.GossipAddr = src.GossipAddr
	dst.RaftAddr = src.RaftAddr
	dst.HTTPAddr = src.HTTPAddr
	dst.Role = src.Role
	dst.Zone = src.Zone
	dst.Version = src.Version
	dst.Boot = src.Boot
}
