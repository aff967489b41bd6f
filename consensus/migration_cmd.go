package consensus

import (
	"errors"
	"fmt"
	"sort"

	"github.com/kelpie/cluster/placement"
)

// Migration commands (G7 MigrationAtomicity). A migration record lives in the
// FSM from MigrationStarted until MigrationCommitted or MigrationAborted, so
// a new leader finds every in-flight migration and finishes or aborts it.
// While an actor migrates its placement is Migrating: no node may activate it.

const (
	// CmdMigrationStart marks an actor Migrating from its owner to a target.
	CmdMigrationStart CommandType = 4
	// CmdMigrationCommit moves the placement to the target with a new token.
	CmdMigrationCommit CommandType = 5
	// CmdMigrationAbort puts the actor back on its source with a new token
	// (or leaves it re-placeable if the source is gone).
	CmdMigrationAbort CommandType = 6
)

// Migration outcomes.
const (
	MigrationRunning   = "running"
	MigrationCommitted = "committed"
	MigrationAborted   = "aborted"
)

// migrationHistory is how many finished migrations the FSM remembers.
const migrationHistory = 256

var (
	// ErrMigrating: the actor is migrating; retry shortly.
	ErrMigrating = errors.New("consensus: actor is migrating")
	// ErrNoMigration: no running migration matches.
	ErrNoMigration = errors.New("consensus: no such running migration")
)

// Migration is one migration's record.
type Migration struct {
	ID       uint64 `json:"id"` // Raft index of MigrationStarted
	Actor    string `json:"actor"`
	From     string `json:"from"`
	To       string `json:"to"`
	OldToken uint64 `json:"old_token"`
	// OldMigration is the migration whose commit or abort produced the
	// placement being migrated (0: a fresh placement). The source uses it to
	// tell state kept from that migration apart from another lineage's.
	OldMigration uint64 `json:"old_migration,omitempty"`
	State        string `json:"state"` // running, committed, aborted
	NewToken     uint64 `json:"new_token,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Checksum     string `json:"checksum,omitempty"` // hex SHA-256 of the transferred state
	Bytes        int64  `json:"bytes,omitempty"`
	StartedAt    int64  `json:"started_at"`         // proposer's clock, unix ns
	EndedAt      int64  `json:"ended_at,omitempty"` // proposer's clock, unix ns
}

// MigrationStart is the payload of CmdMigrationStart.
type MigrationStart struct {
	Actor              string `json:"actor"`
	To                 string `json:"to"`
	Token              uint64 `json:"token"` // the placement being migrated
	ProposedAtUnixNano int64  `json:"proposed_at"`
}

// MigrationEnd is the payload of CmdMigrationCommit and CmdMigrationAbort.
type MigrationEnd struct {
	Actor              string `json:"actor"`
	ID                 uint64 `json:"id"`
	Reason             string `json:"reason,omitempty"`
	Checksum           string `json:"checksum,omitempty"`
	Bytes              int64  `json:"bytes,omitempty"`
	ProposedAtUnixNano int64  `json:"proposed_at"`
}

// Validate checks the payload shape.
func (m MigrationStart) Validate() error {
	if err := validateID(m.Actor); err != nil {
		return fmt.Errorf("%w: actor: %v", ErrInvalidCommand, err)
	}
	if err := validateID(m.To); err != nil {
		return fmt.Errorf("%w: target: %v", ErrInvalidCommand, err)
	}
	if m.Token == 0 {
		return fmt.Errorf("%w: token 0", ErrInvalidCommand)
	}
	return nil
}

func (m *MigrationStart) value() any { return *m }

// Validate checks the payload shape.
func (m MigrationEnd) Validate() error {
	if err := validateID(m.Actor); err != nil {
		return fmt.Errorf("%w: actor: %v", ErrInvalidCommand, err)
	}
	if m.ID == 0 || m.Bytes < 0 || len(m.Reason) > 1024 || len(m.Checksum) > 128 {
		return fmt.Errorf("%w: bad migration end", ErrInvalidCommand)
	}
	return nil
}

func (m *MigrationEnd) value() any { return *m }

// migState is the FSM's migration bookkeeping (guarded with the table).
type migState struct {
	running map[string]Migration // by actor
	history []Migration          // finished, oldest first, at most migrationHistory
}

func newMigState() *migState { return &migState{running: map[string]Migration{}} }

func (s *migState) finish(m Migration) {
	delete(s.running, m.Actor)
	s.history = append(s.history, m)
	if len(s.history) > migrationHistory {
		s.history = append([]Migration(nil), s.history[len(s.history)-migrationHistory:]...)
	}
}

func (s *migState) clone() *migState {
	c := &migState{running: make(map[string]Migration, len(s.running)), history: append([]Migration(nil), s.history...)}
	for k, v := range s.running {
		c.running[k] = v
	}
	return c
}

func applyMigrationStart(tab *placement.Table, ms *migState, v View, c MigrationStart, index uint64) (Migration, error) {
	p, ok := tab.Get(c.Actor)
	if !ok || p.Token != c.Token {
		return Migration{}, fmt.Errorf("%w: %q token %d", ErrNotPlaced, c.Actor, c.Token)
	}
	if p.State == placement.StateMigrating {
		return Migration{}, fmt.Errorf("%w: %q", ErrMigrating, c.Actor)
	}
	if p.Node == c.To {
		return Migration{}, fmt.Errorf("%w: %q is already on %q", ErrInvalidCommand, c.Actor, c.To)
	}
	if m, ok := v.Member(c.To); !ok || m.Status != StatusActive {
		return Migration{}, fmt.Errorf("%w: target %q", ErrNodeNotActive, c.To)
	}
	p.State = placement.StateMigrating
	tab.Put(p)
	m := Migration{ID: index, Actor: c.Actor, From: p.Node, To: c.To, OldToken: p.Token, OldMigration: p.Migration,
		State: MigrationRunning, StartedAt: c.ProposedAtUnixNano}
	ms.running[c.Actor] = m
	return m, nil
}

func applyMigrationCommit(tab *placement.Table, ms *migState, v View, c MigrationEnd, index uint64) (Migration, error) {
	m, ok := ms.running[c.Actor]
	if !ok || m.ID != c.ID {
		return Migration{}, fmt.Errorf("%w: %q id %d", ErrNoMigration, c.Actor, c.ID)
	}
	to, ok := v.Member(m.To)
	if !ok || to.Status != StatusActive {
		return Migration{}, fmt.Errorf("%w: target %q", ErrNodeNotActive, m.To)
	}
	if _, ok := tab.Get(c.Actor); !ok {
		return Migration{}, fmt.Errorf("%w: %q lost its placement", ErrNotPlaced, c.Actor)
	}
	tab.Put(placement.Placement{Actor: c.Actor, Node: m.To, Token: index, State: placement.StateActive, Incarnation: to.Incarnation, Migration: m.ID})
	m.State, m.NewToken, m.Checksum, m.Bytes, m.EndedAt = MigrationCommitted, index, c.Checksum, c.Bytes, c.ProposedAtUnixNano
	ms.finish(m)
	return m, nil
}

func applyMigrationAbort(tab *placement.Table, ms *migState, v View, c MigrationEnd, index uint64) (Migration, error) {
	m, ok := ms.running[c.Actor]
	if !ok || m.ID != c.ID {
		return Migration{}, fmt.Errorf("%w: %q id %d", ErrNoMigration, c.Actor, c.ID)
	}
	m.State, m.Reason, m.EndedAt = MigrationAborted, c.Reason, c.ProposedAtUnixNano
	if p, ok := tab.Get(c.Actor); ok {
		if from, ok := v.Member(p.Node); ok && (from.Status == StatusActive || from.Status == StatusLeaving) {
			tab.Put(placement.Placement{Actor: c.Actor, Node: p.Node, Token: index, State: placement.StateActive, Incarnation: from.Incarnation, Migration: m.ID})
			m.NewToken = index
		} else {
			// The source is gone: leave the actor re-placeable once the
			// source's lease has surely expired.
			tab.Orphan(placement.Orphan{Actor: c.Actor, Node: p.Node, Token: p.Token, Since: index, Incarnation: p.Incarnation})
		}
	}
	ms.finish(m)
	return m, nil
}

// abortGone ends, as aborted, every running migration whose source lost its
// placements in this view change (they were released into orphans).
func abortGone(tab *placement.Table, ms *migState, index uint64, proposedAt int64) bool {
	changed := false
	for _, actor := range sortedKeys(ms.running) {
		m := ms.running[actor]
		if _, placed := tab.Get(actor); placed {
			continue
		}
		m.State, m.Reason, m.EndedAt = MigrationAborted, "source left the view", proposedAt
		ms.finish(m)
		changed = true
	}
	return changed
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
