package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/placement"
)

// User snapshots: an operator saves the committed state as a snapshot
// document (FSM.SnapshotBytes) and restores one cluster-wide
// (Server.UserRestore), for backups and disaster recovery. The document is
// the FSM snapshot document raft itself persists (see fsm_snapshot.go), so
// anything FSM.Restore accepts can be restored and nothing else can.
//
// Restoring is not a plain overwrite. A document is rebased onto the live
// cluster before raft installs it, so that the guarantees hold across the
// restore:
//
//   - MonotonicEpoch (G3): the epoch becomes max(document, live) + 1 and the
//     view index the Raft index of the restore, so no node ever sees either
//     go backwards (nodes only publish views with a higher index).
//   - SingleActivation (G4): every restored placement gets a new fencing
//     token, the Raft index of the restore. It is newer than every token
//     issued before, so hosts and placement caches take the restored
//     placements over anything they remember, and refuse work stamped with
//     older tokens.
//   - Members that are Active both in the document and in the live view are
//     rebound to the live process of the same ID (its boot ID, addresses and
//     incarnation, and the incarnation of its placements). Restoring onto a
//     fresh cluster whose nodes reuse the IDs therefore reproduces the view
//     and the placements instead of failing every member and orphaning its
//     actors. Members without a live Active counterpart are restored as
//     they are; the leader's reconciler then treats them like any member
//     gossip disagrees with.
//   - Migrations that were running when the document was taken end aborted
//     (their state transfer died with the cluster that ran them): the actor
//     stays on its source.

// restoreIndexGap is how far above the leader's last log index a restored
// snapshot is placed. raft installs a user snapshot at max(meta.Index, last
// index)+1; the document must carry that index before raft sees it, so the
// gap absorbs entries appended between reading the last index and raft
// ingesting the restore (microseconds; raft appends at most a few thousand
// entries per second). A gap in the index is what raft expects here: it makes
// followers fault and install the snapshot.
const restoreIndexGap = 1024

// userRestoreMu serialises user restores (they are rare operator actions;
// one lock for the process is enough).
var userRestoreMu sync.Mutex

// SnapshotInfo summarises a snapshot document.
type SnapshotInfo struct {
	Version    int    `json:"version"`
	Epoch      uint64 `json:"epoch"`
	Index      uint64 `json:"index"`   // the view's Raft index
	Applied    uint64 `json:"applied"` // the last Raft index applied
	Members    int    `json:"members"` // records, including Left tombstones
	InView     int    `json:"in_view"` // members not Left
	Placements int    `json:"placements"`
	Orphans    int    `json:"orphans"`
	Migrations int    `json:"migrations"` // running
}

// userSnapshotSink is an in-memory raft.SnapshotSink.
type userSnapshotSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *userSnapshotSink) ID() string    { return "user" }
func (s *userSnapshotSink) Cancel() error { s.cancelled = true; return nil }
func (s *userSnapshotSink) Close() error  { return nil }

// SnapshotBytes returns the snapshot document of the committed state at
// call time: exactly what raft would persist for a snapshot taken now.
func (f *FSM) SnapshotBytes() ([]byte, error) {
	snap, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Release()
	sink := &userSnapshotSink{}
	if err := snap.Persist(sink); err != nil {
		return nil, err
	}
	return sink.Bytes(), nil
}

// ValidateSnapshot checks data by restoring it into a scratch FSM, under the
// same rules raft's own restores follow, and summarises it. Errors wrap
// ErrInvalidSnapshot.
func ValidateSnapshot(data []byte) (SnapshotInfo, error) {
	scratch := NewFSM()
	if err := scratch.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		return SnapshotInfo{}, err
	}
	return scratch.info(), nil
}

// info summarises the FSM's state.
func (f *FSM) info() SnapshotInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	in := SnapshotInfo{
		Version:    SnapshotVersion,
		Epoch:      f.mu.view.Epoch,
		Index:      f.mu.view.Index,
		Applied:    f.mu.applied,
		Members:    len(f.mu.view.Members),
		Placements: f.mu.tab.Len(),
		Orphans:    f.mu.tab.NumOrphans(),
		Migrations: len(f.mu.migs.running),
	}
	for _, m := range f.mu.view.Members {
		if m.InView() {
			in.InView++
		}
	}
	return in
}

// RestoreOptions tune UserRestore.
type RestoreOptions struct {
	// NowUnixNano is stamped into the migrations the restore aborts (the
	// FSM reads no clock; the proposer stamps times).
	NowUnixNano int64
	// BeforeRestore, if set, runs once the document is rebased and
	// validated and before raft installs it, with the placements the
	// restore is about to commit. An error cancels the restore with nothing
	// changed. The node uses it to deactivate the actors placed before the
	// restore, so that none keeps running under a token the restore
	// replaced (G4).
	BeforeRestore func(ctx context.Context, restored []placement.Placement) error
}

// RestoreReport says what UserRestore installed.
type RestoreReport struct {
	Source   SnapshotInfo `json:"source"`   // the document as given
	Restored SnapshotInfo `json:"restored"` // the document installed (rebased)
	// Rebound lists the members adopted by the live process of the same ID.
	Rebound []string `json:"rebound"`
	// AbortedMigrations lists the actors whose running migration the
	// restore ended as aborted.
	AbortedMigrations []string `json:"aborted_migrations"`
}

// UserRestore replaces the replicated state, cluster-wide, with the snapshot
// document data, through raft's user restore: the leader installs it as a
// snapshot and followers fault and install it too. It runs on the leader only
// (ErrNotLeader otherwise) and returns once a no-op entry after the restore
// has committed, so a quorum holds the restored state. The document is
// validated first (ErrInvalidSnapshot, nothing changed) and rebased onto the
// live cluster (see the file comment). Entries in flight when the restore is
// ingested fail; their outcome is "not applied", since the restore replaces
// the state they would have changed.
func (s *Server) UserRestore(ctx context.Context, data []byte, opts RestoreOptions) (RestoreReport, error) {
	// One restore at a time: a second one must compute its index after the
	// first has landed.
	userRestoreMu.Lock()
	defer userRestoreMu.Unlock()
	var rep RestoreReport
	src, err := ValidateSnapshot(data)
	if err != nil {
		return rep, err
	}
	rep.Source = src
	doc, err := decodeSnapshot(bytes.NewReader(data))
	if err != nil {
		return rep, err
	}
	r, err := s.r()
	if err != nil {
		return rep, err
	}
	if r.State() != raft.Leader {
		return rep, ErrNotLeader
	}
	// Everything committed is applied here before the live view is read, so
	// the rebased epoch is above every epoch any node has served.
	if err := wait(ctx, r.Barrier(timeoutOf(ctx))); err != nil {
		return rep, err
	}
	base := r.LastIndex() + restoreIndexGap
	target := base + 1
	rep.Rebound, rep.AbortedMigrations = rebaseSnapshot(&doc, s.fsm.View(), target, opts.NowUnixNano)
	out, err := json.Marshal(doc)
	if err != nil {
		return rep, fmt.Errorf("%w: encode rebased document: %v", ErrInvalidSnapshot, err)
	}
	// Raft panics if the FSM refuses a user restore; make sure it cannot.
	if rep.Restored, err = ValidateSnapshot(out); err != nil {
		return rep, fmt.Errorf("rebased document: %w", err)
	}
	if opts.BeforeRestore != nil {
		if err := opts.BeforeRestore(ctx, doc.Table.All()); err != nil {
			return rep, err
		}
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: base, Size: int64(len(out))}
	done := make(chan error, 1)
	go func() { done <- r.Restore(meta, bytes.NewReader(out), timeoutOf(ctx)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return rep, fmt.Errorf("consensus: restore: outcome unknown: %w", ctx.Err())
	}
	if err != nil {
		return rep, fmt.Errorf("consensus: restore: %w", mapErr(err))
	}
	if idx, _ := strconv.ParseUint(r.Stats()["last_snapshot_index"], 10, 64); idx != target {
		s.logger.Warn("restored snapshot landed at another index than its document says",
			"document_index", target, "raft_index", idx)
	}
	s.logger.Info("snapshot restored", "epoch", rep.Restored.Epoch, "index", target,
		"members", rep.Restored.Members, "placements", rep.Restored.Placements,
		"rebound", len(rep.Rebound), "aborted_migrations", len(rep.AbortedMigrations))
	return rep, nil
}

// rebaseSnapshot rewrites doc for installation at Raft index target over the
// live view (see the file comment). It returns the rebound members and the
// actors whose running migration it aborted. Pure: no clock, no I/O.
func rebaseSnapshot(doc *snapshotDoc, live View, target uint64, now int64) (rebound, aborted []string) {
	rebound, aborted = []string{}, []string{}
	doc.Epoch = max(doc.Epoch, live.Epoch) + 1
	doc.Index, doc.Applied = target, target

	incarnation := map[string]uint64{} // rebound member → live incarnation
	members := make([]Member, len(doc.Members))
	for i, m := range doc.Members {
		if l, ok := live.Member(m.ID); ok && m.Status == StatusActive && l.Status == StatusActive {
			m.GossipAddr, m.RaftAddr, m.HTTPAddr = l.GossipAddr, l.RaftAddr, l.HTTPAddr
			m.Role, m.Zone, m.Version, m.Boot = l.Role, l.Zone, l.Version, l.Boot
			m.Incarnation, m.JoinedAt = l.Incarnation, l.JoinedAt
			m.UpdatedAt, m.UpdatedEpoch, m.Reason = target, doc.Epoch, "snapshot restore"
			incarnation[m.ID] = l.Incarnation
			rebound = append(rebound, m.ID)
		}
		members[i] = m
	}
	doc.Members = members

	running := map[string]Migration{}
	for _, m := range doc.Migrations {
		running[m.Actor] = m
	}
	tab := placement.NewTable()
	for _, p := range doc.Table.All() {
		p.Token = target
		if inc, ok := incarnation[p.Node]; ok {
			p.Incarnation = inc
		}
		if m, ok := running[p.Actor]; ok {
			// Back on its source, as an abort would leave it: the source
			// activates it with the state it parked for this migration.
			p.State, p.Migration = placement.StateActive, m.ID
		}
		tab.Put(p)
	}
	for _, o := range doc.Table.Orphans() {
		tab.Orphan(o)
	}
	doc.Table = tab

	history := append([]Migration{}, doc.MigrationsHistory...)
	for _, m := range doc.Migrations { // sorted by actor
		m.State, m.NewToken, m.EndedAt = MigrationAborted, target, now
		m.Reason = "aborted by snapshot restore"
		history = append(history, m)
		aborted = append(aborted, m.Actor)
	}
	if len(history) > migrationHistory {
		history = history[len(history)-migrationHistory:]
	}
	doc.Migrations, doc.MigrationsHistory = []Migration{}, history
	return rebound, aborted
}
