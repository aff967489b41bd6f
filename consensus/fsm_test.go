package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// raftLog wraps command bytes in a committed raft log entry.
func raftLog(index uint64, b []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

// encodeUnchecked builds command bytes for vc without Encode's validation,
// the way a buggy or malicious proposer could.
func encodeUnchecked(t testing.TB, vc ViewChange) []byte {
	t.Helper()
	body, err := json.Marshal(vc)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{CodecVersion, byte(CmdViewChange)}, body...)
}

// harness drives an FSM with consecutive log indexes.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newHarness(t testing.TB) *harness { return &harness{t: t, f: NewFSM()} }

// applyBytes applies b as the next log entry and returns the result.
func (h *harness) applyBytes(b []byte) *ApplyResult {
	h.t.Helper()
	h.index++
	return h.applyLog(raftLog(h.index, b))
}

func (h *harness) applyLog(l *raft.Log) *ApplyResult {
	h.t.Helper()
	out := h.f.Apply(l)
	res, ok := out.(*ApplyResult)
	if !ok || res == nil {
		h.t.Fatalf("Apply returned %T %v, want non-nil *ApplyResult", out, out)
	}
	if l != nil && res.Index != l.Index {
		h.t.Fatalf("result index %d, want %d", res.Index, l.Index)
	}
	return res
}

// apply encodes vc and applies it as the next log entry.
func (h *harness) apply(vc ViewChange) *ApplyResult {
	h.t.Helper()
	return h.applyBytes(mustEncode(h.t, vc))
}

// mustApply applies vc and fails the test unless it committed a new epoch.
func (h *harness) mustApply(vc ViewChange) *ApplyResult {
	h.t.Helper()
	before := h.f.View().Epoch
	res := h.apply(vc)
	if res.Err != nil {
		h.t.Fatalf("apply %+v: %v", vc, res.Err)
	}
	if res.Epoch != before+1 {
		h.t.Fatalf("epoch %d after apply, want %d", res.Epoch, before+1)
	}
	return res
}

// drive moves member id through the given statuses, one command each.
func (h *harness) drive(id string, path ...Status) {
	h.t.Helper()
	for _, s := range path {
		h.mustApply(viewChange("drive", member(id, s)))
	}
}

// pathTo lists the statuses that take an unknown member to the key status.
var pathTo = map[Status][]Status{
	StatusNone:    nil,
	StatusJoining: {StatusJoining},
	StatusActive:  {StatusJoining, StatusActive},
	StatusLeaving: {StatusJoining, StatusActive, StatusLeaving},
	StatusFailed:  {StatusJoining, StatusFailed},
	StatusLeft:    {StatusJoining, StatusFailed, StatusLeft},
}

var allStatuses = []Status{StatusNone, StatusJoining, StatusActive, StatusLeaving, StatusFailed, StatusLeft}

func mustMember(t testing.TB, v View, id string) Member {
	t.Helper()
	m, ok := v.Member(id)
	if !ok {
		t.Fatalf("member %q not in view %v", id, v)
	}
	return m
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// assertUnchanged checks that a rejected entry left the view alone but was
// recorded as applied.
func assertUnchanged(t testing.TB, f *FSM, before View, watch <-chan struct{}, index uint64, res *ApplyResult) {
	t.Helper()
	if got := f.View(); !reflect.DeepEqual(got, before) {
		t.Fatalf("view changed by rejected entry:\n got %v\nwant %v", got, before)
	}
	if res.Epoch != before.Epoch {
		t.Fatalf("result epoch %d, want unchanged %d", res.Epoch, before.Epoch)
	}
	if got := f.AppliedIndex(); got != index {
		t.Fatalf("AppliedIndex = %d, want %d", got, index)
	}
	if isClosed(watch) {
		t.Fatal("watch channel closed although the view did not change")
	}
}

// TestLegalTransitionTable pins LegalTransition to the table in the Status
// doc comment, so the FSM tests below cannot pass against a wrong rule.
func TestLegalTransitionTable(t *testing.T) {
	legal := map[[2]Status]bool{
		{StatusNone, StatusJoining}:   true,
		{StatusLeft, StatusJoining}:   true,
		{StatusJoining, StatusActive}: true,
		{StatusJoining, StatusFailed}: true,
		{StatusActive, StatusLeaving}: true,
		{StatusActive, StatusFailed}:  true,
		{StatusLeaving, StatusLeft}:   true,
		{StatusFailed, StatusLeft}:    true,
	}
	for from := Status(0); from <= StatusLeft+1; from++ {
		for to := Status(0); to <= StatusLeft+1; to++ {
			if got, want := LegalTransition(from, to), legal[[2]Status{from, to}]; got != want {
				t.Errorf("LegalTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
}

// TestFSMTransitions applies every (from, to) status pair and checks that
// the FSM accepts exactly the legal transitions.
func TestFSMTransitions(t *testing.T) {
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				h := newHarness(t)
				h.drive("bystander", StatusJoining, StatusActive)
				h.drive("n1", pathTo[from]...)
				before, watch := h.f.Watch()
				var prev Member
				if from != StatusNone {
					prev = mustMember(t, before, "n1")
				}

				// Bypass Encode's validation so that the FSM itself must
				// reject the target status none.
				res := h.applyBytes(encodeUnchecked(t, viewChange("test", member("n1", to))))

				legal := LegalTransition(from, to)
				switch {
				case legal:
					if res.Err != nil {
						t.Fatalf("legal transition rejected: %v", res.Err)
					}
					v := h.f.View()
					if v.Epoch != before.Epoch+1 || res.Epoch != v.Epoch || v.Index != h.index {
						t.Fatalf("epoch/index = %d/%d (result epoch %d), want %d/%d", v.Epoch, v.Index, res.Epoch, before.Epoch+1, h.index)
					}
					m := mustMember(t, v, "n1")
					if m.Status != to || m.UpdatedAt != h.index || m.UpdatedEpoch != v.Epoch || m.Reason != "test" {
						t.Fatalf("member after transition = %+v", m)
					}
					wantInc, wantJoined := prev.Incarnation, prev.JoinedAt
					if to == StatusJoining {
						wantInc, wantJoined = prev.Incarnation+1, h.index
					}
					if m.Incarnation != wantInc || m.JoinedAt != wantJoined {
						t.Fatalf("incarnation/joined_at = %d/%d, want %d/%d", m.Incarnation, m.JoinedAt, wantInc, wantJoined)
					}
					if got, want := mustMember(t, v, "bystander"), mustMember(t, before, "bystander"); got != want {
						t.Fatalf("bystander changed: %+v -> %+v", want, got)
					}
					if !isClosed(watch) {
						t.Fatal("watch channel not closed by a new epoch")
					}
				case to == StatusNone:
					if !errors.Is(res.Err, ErrInvalidCommand) {
						t.Fatalf("target none: err = %v, want ErrInvalidCommand", res.Err)
					}
					assertUnchanged(t, h.f, before, watch, h.index, res)
				case from == to:
					if !errors.Is(res.Err, ErrNoChange) {
						t.Fatalf("same status, same metadata: err = %v, want ErrNoChange", res.Err)
					}
					assertUnchanged(t, h.f, before, watch, h.index, res)
				default:
					var te *TransitionError
					if !errors.As(res.Err, &te) || !errors.Is(res.Err, ErrIllegalTransition) {
						t.Fatalf("illegal transition: err = %v, want *TransitionError", res.Err)
					}
					if *te != (TransitionError{ID: "n1", From: from, To: to}) {
						t.Fatalf("TransitionError = %+v", *te)
					}
					assertUnchanged(t, h.f, before, watch, h.index, res)
				}
			})
		}
	}
}

func TestRejoinIncarnation(t *testing.T) {
	cases := []struct {
		name string
		path []Status
	}{
		{"via failed", []Status{StatusJoining, StatusActive, StatusFailed, StatusLeft, StatusJoining, StatusActive}},
		{"via leaving", []Status{StatusJoining, StatusActive, StatusLeaving, StatusLeft, StatusJoining, StatusActive}},
		{"failed while joining", []Status{StatusJoining, StatusFailed, StatusLeft, StatusJoining, StatusActive}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var firstJoin, rejoin uint64
			for _, s := range tc.path {
				h.mustApply(viewChange("step", member("n1", s)))
				if s == StatusJoining {
					if firstJoin == 0 {
						firstJoin = h.index
					} else {
						rejoin = h.index
					}
				}
				if s == StatusLeft {
					// The tombstone keeps the first incarnation.
					if m := mustMember(t, h.f.View(), "n1"); m.Incarnation != 1 || m.JoinedAt != firstJoin {
						t.Fatalf("tombstone = %+v", m)
					}
				}
			}
			v := h.f.View()
			m := mustMember(t, v, "n1")
			if m.Status != StatusActive || m.Incarnation != 2 || m.JoinedAt != rejoin || m.UpdatedAt != h.index {
				t.Fatalf("after rejoin: %+v (rejoin index %d, last index %d)", m, rejoin, h.index)
			}
			if v.Epoch != uint64(len(tc.path)) {
				t.Fatalf("epoch %d, want one per command (%d)", v.Epoch, len(tc.path))
			}
		})
	}
}

func TestBatches(t *testing.T) {
	t.Run("join and activate in one command", func(t *testing.T) {
		h := newHarness(t)
		h.mustApply(viewChange("join", member("n1", StatusJoining), member("n1", StatusActive)))
		v := h.f.View()
		m := mustMember(t, v, "n1")
		if v.Epoch != 1 || m.Status != StatusActive || m.Incarnation != 1 || m.JoinedAt != 1 || m.UpdatedAt != 1 || m.UpdatedEpoch != 1 {
			t.Fatalf("view %v", v)
		}
	})
	t.Run("failed left joining in one command", func(t *testing.T) {
		h := newHarness(t)
		h.drive("n1", StatusJoining, StatusActive, StatusFailed)
		h.mustApply(viewChange("rejoin", member("n1", StatusLeft), member("n1", StatusJoining)))
		v := h.f.View()
		m := mustMember(t, v, "n1")
		if v.Epoch != 4 || m.Status != StatusJoining || m.Incarnation != 2 || m.JoinedAt != 4 || m.Reason != "rejoin" {
			t.Fatalf("view %v", v)
		}
	})
	t.Run("many members one epoch, sorted", func(t *testing.T) {
		h := newHarness(t)
		h.mustApply(viewChange("storm", member("c", StatusJoining), member("a", StatusJoining), member("b", StatusJoining)))
		v := h.f.View()
		if v.Epoch != 1 || len(v.Members) != 3 {
			t.Fatalf("view %v", v)
		}
		for i, id := range []string{"a", "b", "c"} {
			if v.Members[i].ID != id || v.Members[i].UpdatedEpoch != 1 {
				t.Fatalf("members %v", v.Members)
			}
		}
	})
	t.Run("one illegal change applies nothing", func(t *testing.T) {
		h := newHarness(t)
		h.drive("a", StatusJoining)
		before, watch := h.f.Watch()
		res := h.apply(viewChange("bad", member("b", StatusJoining), member("a", StatusLeaving), member("c", StatusJoining)))
		var te *TransitionError
		if !errors.As(res.Err, &te) || *te != (TransitionError{ID: "a", From: StatusJoining, To: StatusLeaving}) {
			t.Fatalf("err = %v", res.Err)
		}
		assertUnchanged(t, h.f, before, watch, h.index, res)
	})
	t.Run("later change sees earlier one", func(t *testing.T) {
		h := newHarness(t)
		h.drive("a", StatusJoining)
		before, watch := h.f.Watch()
		// Joining->Active is legal; the second change then asks Active->Joining.
		res := h.apply(viewChange("bad", member("a", StatusActive), member("a", StatusJoining)))
		var te *TransitionError
		if !errors.As(res.Err, &te) || *te != (TransitionError{ID: "a", From: StatusActive, To: StatusJoining}) {
			t.Fatalf("err = %v", res.Err)
		}
		assertUnchanged(t, h.f, before, watch, h.index, res)
	})
	t.Run("new member then illegal on it", func(t *testing.T) {
		h := newHarness(t)
		before, watch := h.f.Watch()
		res := h.apply(viewChange("bad", member("a", StatusJoining), member("a", StatusLeft)))
		if !errors.Is(res.Err, ErrIllegalTransition) {
			t.Fatalf("err = %v", res.Err)
		}
		assertUnchanged(t, h.f, before, watch, h.index, res)
	})
	t.Run("no-op change beside a real one", func(t *testing.T) {
		h := newHarness(t)
		h.drive("a", StatusJoining, StatusActive)
		a := mustMember(t, h.f.View(), "a")
		h.mustApply(viewChange("join", member("a", StatusActive), member("b", StatusJoining)))
		if got := mustMember(t, h.f.View(), "a"); got != a {
			t.Fatalf("no-op change rewrote a: %+v -> %+v", a, got)
		}
	})
}

func TestNoChange(t *testing.T) {
	h := newHarness(t)
	h.drive("a", StatusJoining, StatusActive)
	h.drive("b", StatusJoining)
	before, watch := h.f.Watch()

	cases := []struct {
		name string
		vc   ViewChange
	}{
		{"single identical", viewChange("again", member("a", StatusActive))},
		{"batch of identical", viewChange("again", member("b", StatusJoining), member("a", StatusActive), member("a", StatusActive))},
		{"fsm-owned fields differ", func() ViewChange {
			m := member("a", StatusActive)
			m.Incarnation, m.JoinedAt, m.UpdatedAt, m.UpdatedEpoch, m.Reason = 42, 42, 42, 42, "other"
			return viewChange("different reason", m)
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.apply(tc.vc)
			if !errors.Is(res.Err, ErrNoChange) {
				t.Fatalf("err = %v, want ErrNoChange", res.Err)
			}
			assertUnchanged(t, h.f, before, watch, h.index, res)
		})
	}
}

func TestMetadataUpdate(t *testing.T) {
	for _, s := range allStatuses[1:] {
		t.Run(s.String(), func(t *testing.T) {
			h := newHarness(t)
			h.drive("a", pathTo[s]...)
			before, watch := h.f.Watch()
			old := mustMember(t, before, "a")

			upd := member("a", s)
			upd.Role = RoleServer
			upd.RaftAddr = "127.0.0.9:8300"
			upd.HTTPAddr = "127.0.0.9:8500"
			upd.GossipAddr = "127.0.0.9:7946"
			upd.Zone = "z2"
			upd.Version = "v2"
			res := h.apply(viewChange("meta", upd))
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			v := h.f.View()
			if v.Epoch != before.Epoch+1 || v.Index != h.index || !isClosed(watch) {
				t.Fatalf("metadata update did not commit an epoch: %v", v)
			}
			want := upd
			want.Incarnation, want.JoinedAt = old.Incarnation, old.JoinedAt
			want.UpdatedAt, want.UpdatedEpoch, want.Reason = h.index, v.Epoch, "meta"
			if got := mustMember(t, v, "a"); got != want {
				t.Fatalf("member = %+v, want %+v", got, want)
			}
		})
	}
}

func TestFSMOwnedFieldsIgnored(t *testing.T) {
	h := newHarness(t)
	m := member("a", StatusJoining)
	m.Incarnation, m.JoinedAt, m.UpdatedAt, m.UpdatedEpoch, m.Reason = 99, 98, 97, 96, "forged"
	h.mustApply(viewChange("join", m))
	got := mustMember(t, h.f.View(), "a")
	if got.Incarnation != 1 || got.JoinedAt != 1 || got.UpdatedAt != 1 || got.UpdatedEpoch != 1 || got.Reason != "join" {
		t.Fatalf("member = %+v", got)
	}
}

func TestNonCommandLogsIgnored(t *testing.T) {
	types := []raft.LogType{raft.LogNoop, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated,
		raft.LogBarrier, raft.LogConfiguration, raft.LogType(200)}
	for _, lt := range types {
		t.Run(lt.String(), func(t *testing.T) {
			h := newHarness(t)
			h.drive("a", StatusJoining)
			before, watch := h.f.Watch()
			// Even a valid command is ignored when the entry is not a command.
			l := raftLog(h.index+5, mustEncode(t, viewChange("x", member("b", StatusJoining))))
			l.Type = lt
			res := h.applyLog(l)
			if res.Err != nil {
				t.Fatalf("err = %v", res.Err)
			}
			assertUnchanged(t, h.f, before, watch, l.Index, res)
		})
	}
}

func TestApplyInvalidBytes(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"one byte", []byte{CodecVersion}},
		{"bad version", rawCommand(9, byte(CmdViewChange), `{}`)},
		{"bad type", rawCommand(CodecVersion, 77, `{}`)},
		{"garbage", []byte("\x01\x01\xff\xfe\x00")},
		{"unknown field", rawCommand(CodecVersion, byte(CmdViewChange),
			`{"changes":[{"member":{"id":"b","role":"client","status":"joining"}}],"epoch":9}`)},
		{"trailing data", append(mustEncode(t, viewChange("x", member("b", StatusJoining))), '}')},
		{"target none", rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[{"member":{"id":"b","role":"client","status":"none"}}]}`)},
		{"no changes", rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[]}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.drive("a", StatusJoining)
			before, watch := h.f.Watch()
			res := h.applyBytes(tc.b)
			if !errors.Is(res.Err, ErrInvalidCommand) {
				t.Fatalf("err = %v, want ErrInvalidCommand", res.Err)
			}
			assertUnchanged(t, h.f, before, watch, h.index, res)
		})
	}
	t.Run("nil log", func(t *testing.T) {
		h := newHarness(t)
		h.drive("a", StatusJoining)
		before, watch := h.f.Watch()
		res := h.applyLog(nil)
		if !errors.Is(res.Err, ErrInvalidCommand) {
			t.Fatalf("err = %v, want ErrInvalidCommand", res.Err)
		}
		assertUnchanged(t, h.f, before, watch, h.index, res)
	})
}

func TestViewIsACopy(t *testing.T) {
	h := newHarness(t)
	h.drive("a", StatusJoining)
	v := h.f.View()
	v.Members[0].Status = StatusLeft
	v.Members[0].ID = "zzz"
	w, _ := h.f.Watch()
	w.Members[0].Zone = "mutated"
	if m := mustMember(t, h.f.View(), "a"); m.Status != StatusJoining || m.Zone != "" {
		t.Fatalf("caller mutation leaked into the FSM: %+v", m)
	}
}

func TestWatch(t *testing.T) {
	h := newHarness(t)
	v0, w0 := h.f.Watch()
	if v0.Epoch != 0 || len(v0.Members) != 0 || isClosed(w0) {
		t.Fatalf("initial watch: %v closed=%v", v0, isClosed(w0))
	}

	done := make(chan View)
	go func() {
		<-w0
		done <- h.f.View()
	}()
	h.drive("a", StatusJoining)
	if v := <-done; v.Epoch != 1 {
		t.Fatalf("woken with epoch %d, want 1", v.Epoch)
	}

	v1, w1 := h.f.Watch()
	if v1.Epoch != 1 || isClosed(w1) {
		t.Fatalf("second watch: %v closed=%v", v1, isClosed(w1))
	}
	h.apply(viewChange("noop", member("a", StatusJoining)))          // no change
	h.apply(viewChange("bad", member("a", StatusLeft)))              // illegal
	h.applyBytes([]byte("junk"))                                     // invalid
	h.applyLog(&raft.Log{Index: h.index + 1, Type: raft.LogBarrier}) // not a command
	if isClosed(w1) {
		t.Fatal("watch closed without a view change")
	}
	h.drive("a", StatusActive)
	if !isClosed(w1) {
		t.Fatal("watch not closed by a view change")
	}
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	writeErr  error
	closed    bool
	cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}

func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func persist(t testing.TB, snap raft.FSMSnapshot) []byte {
	t.Helper()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return persist(t, snap)
}

func restoreBytes(f *FSM, b []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// buildHistory applies a varied history: joins, a batch, a failure and a
// rejoin, metadata updates, a no-op and rejected entries.
func buildHistory(h *harness) {
	h.t.Helper()
	srv := member("srv-1", StatusJoining)
	srv.Role, srv.RaftAddr = RoleServer, "127.0.0.2:8300"
	h.mustApply(viewChange("join", srv, member("c1", StatusJoining), member("c2", StatusJoining)))
	srv.Status = StatusActive
	h.mustApply(viewChange("reconcile", srv, member("c1", StatusActive), member("c2", StatusActive)))
	h.drive("c2", StatusFailed, StatusLeft, StatusJoining)
	h.apply(viewChange("noop", member("c1", StatusActive)))
	h.apply(viewChange("illegal", member("c1", StatusJoining)))
	h.applyBytes([]byte{1})
	up := member("c1", StatusActive)
	up.Zone = "b"
	h.mustApply(viewChange("meta", up))
	h.drive("c3", StatusJoining, StatusActive, StatusLeaving)
	h.applyLog(&raft.Log{Index: h.index + 1, Type: raft.LogNoop})
	h.index++
}

// continuation is a series of commands that exercises every kind of result
// on the state built by buildHistory.
func continuation() []ViewChange {
	return []ViewChange{
		viewChange("leave", member("c3", StatusLeft)),
		viewChange("rejoin", member("c3", StatusJoining), member("c3", StatusActive)),
		viewChange("noop", member("c1", StatusActive)),
		viewChange("illegal", member("c2", StatusLeaving)),
		viewChange("join", member("new", StatusJoining)),
		viewChange("failed", member("srv-1", StatusFailed), member("c1", StatusFailed)),
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := newHarness(t)
	buildHistory(h)
	snapBytes := snapshotBytes(t, h.f)

	g := NewFSM()
	seedState(t, g)
	_, watch := g.Watch()
	if err := restoreBytes(g, snapBytes); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !isClosed(watch) {
		t.Fatal("restore did not wake watchers")
	}
	if got, want := g.View(), h.f.View(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored view:\n got %v\nwant %v", got, want)
	}
	if got, want := g.AppliedIndex(), h.f.AppliedIndex(); got != want {
		t.Fatalf("restored applied index %d, want %d", got, want)
	}
	if again := snapshotBytes(t, g); !bytes.Equal(again, snapBytes) {
		t.Fatalf("snapshot of restored FSM differs:\n got %s\nwant %s", again, snapBytes)
	}

	// Identical behaviour afterwards.
	hg := &harness{t: t, f: g, index: h.index}
	for i, vc := range continuation() {
		r1, r2 := h.apply(vc), hg.apply(vc)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("command %d: results differ: %+v vs %+v", i, r1, r2)
		}
		if !reflect.DeepEqual(h.f.View(), g.View()) {
			t.Fatalf("command %d: views differ:\n%v\n%v", i, h.f.View(), g.View())
		}
	}
}

// seedState gives an FSM some state of its own, so a restore test can tell
// replaced state from merged state.
func seedState(t testing.TB, f *FSM) {
	h := &harness{t: t, f: f, index: 1000}
	h.drive("stale-node", StatusJoining, StatusActive)
}

func TestSnapshotEmptyFormat(t *testing.T) {
	f := NewFSM()
	got := snapshotBytes(t, f)
	const want = `{"version":1,"epoch":0,"index":0,"applied":0,"members":[],"table":{"placements":[],"orphans":[]},"migrations":[],"migrations_history":[]}`
	if string(got) != want {
		t.Fatalf("empty snapshot = %s, want %s", got, want)
	}
	g := NewFSM()
	seedState(t, g)
	if err := restoreBytes(g, got); err != nil {
		t.Fatal(err)
	}
	if v := g.View(); !reflect.DeepEqual(v, View{}) || g.AppliedIndex() != 0 {
		t.Fatalf("restored empty snapshot: %#v applied %d", v, g.AppliedIndex())
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	h := newHarness(t)
	buildHistory(h)
	want := h.f.View()
	wantApplied := h.f.AppliedIndex()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	// Persist concurrently with Applies that change existing members and
	// insert new ones (the race detector checks the sharing).
	var wg sync.WaitGroup
	sink := &memSink{}
	var persistErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		persistErr = snap.Persist(sink)
	}()
	for _, vc := range continuation() {
		h.apply(vc)
	}
	wg.Wait()
	if persistErr != nil {
		t.Fatal(persistErr)
	}
	got := sink.Bytes()

	var doc snapshotDoc
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Epoch != want.Epoch || doc.Index != want.Index || doc.Applied != wantApplied || !reflect.DeepEqual(doc.Members, want.Members) {
		t.Fatalf("snapshot does not match the state at Snapshot time:\n got %s\nwant %v applied %d", got, want, wantApplied)
	}
	if h.f.View().Epoch == want.Epoch {
		t.Fatal("test is vacuous: the continuation changed nothing")
	}
}

func TestPersistWriteErrorCancels(t *testing.T) {
	f := NewFSM()
	snap, _ := f.Snapshot()
	boom := errors.New("disk full")
	sink := &memSink{writeErr: boom}
	if err := snap.Persist(sink); !errors.Is(err, boom) {
		t.Fatalf("Persist = %v, want %v", err, boom)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
	}
}

func TestRestoreRejectsCorrupt(t *testing.T) {
	h := newHarness(t)
	buildHistory(h)
	good := snapshotBytes(t, h.f)
	var base snapshotDoc
	if err := json.Unmarshal(good, &base); err != nil {
		t.Fatal(err)
	}
	if len(base.Members) < 3 {
		t.Fatalf("need at least 3 members, have %d", len(base.Members))
	}
	mutate := func(fn func(d *snapshotDoc)) []byte {
		d := base
		d.Members = append([]Member(nil), base.Members...)
		fn(&d)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("snapshot %s does not contain %q", good, old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}

	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"whitespace", []byte("  \n")},
		{"not json", []byte("snapshot")},
		{"json null", []byte("null")},
		{"json array", []byte("[]")},
		{"truncated", good[:len(good)/2]},
		{"missing last brace", good[:len(good)-1]},
		{"trailing data", append(append([]byte(nil), good...), "x"...)},
		{"two documents", append(append([]byte(nil), good...), good...)},
		{"version 0", mutate(func(d *snapshotDoc) { d.Version = 0 })},
		{"version 2", mutate(func(d *snapshotDoc) { d.Version = 2 })},
		{"version missing", replace(`"version":1,`, ``)},
		{"version as string", replace(`"version":1`, `"version":"1"`)},
		{"negative epoch", replace(fmt.Sprintf(`"epoch":%d`, base.Epoch), `"epoch":-1`)},
		{"unknown top-level field", replace(`"version":1,`, `"version":1,"term":3,`)},
		{"unknown member field", replace(`"id":"c1",`, `"id":"c1","color":"red",`)},
		{"members object", replace(`"members":[`, `"members":{"x":[`)},
		{"unsorted", mutate(func(d *snapshotDoc) { d.Members[0], d.Members[1] = d.Members[1], d.Members[0] })},
		{"duplicate id", mutate(func(d *snapshotDoc) { d.Members[1].ID = d.Members[0].ID })},
		{"empty id", mutate(func(d *snapshotDoc) { d.Members[0].ID = "" })},
		{"bad id chars", mutate(func(d *snapshotDoc) { d.Members[0].ID = "a b" })},
		{"status none", mutate(func(d *snapshotDoc) { d.Members[0].Status = StatusNone })},
		{"status unknown name", replace(`"status":"active"`, `"status":"zombie"`)},
		{"status out of range", mutate(func(d *snapshotDoc) { d.Members[0].Status = 17 })},
		{"bad role", mutate(func(d *snapshotDoc) { d.Members[0].Role = "voter" })},
		{"incarnation 0", mutate(func(d *snapshotDoc) { d.Members[0].Incarnation = 0 })},
		{"updated_epoch 0", mutate(func(d *snapshotDoc) { d.Members[0].UpdatedEpoch = 0 })},
		{"updated_epoch after epoch", mutate(func(d *snapshotDoc) { d.Members[0].UpdatedEpoch = d.Epoch + 1 })},
		{"epoch 0 with members", mutate(func(d *snapshotDoc) { d.Epoch = 0 })},
		{"epoch 0 with index", []byte(`{"version":1,"epoch":0,"index":5,"applied":5,"members":[]}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM()
			seedState(t, f)
			before, watch := f.Watch()
			applied := f.AppliedIndex()
			err := restoreBytes(f, tc.b)
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Restore(%s) = %v, want ErrInvalidSnapshot", tc.b, err)
			}
			if got := f.View(); !reflect.DeepEqual(got, before) || f.AppliedIndex() != applied {
				t.Fatalf("failed restore changed state: %v applied %d", got, f.AppliedIndex())
			}
			if isClosed(watch) {
				t.Fatal("failed restore woke watchers")
			}
		})
	}
}

// TestConcurrentReaders runs readers and snapshots against a stream of
// Applies; with -race it checks the locking, and it checks that readers
// never see the epoch or applied index go backwards.
func TestConcurrentReaders(t *testing.T) {
	h := newHarness(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lastEpoch, lastApplied uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, _ := h.f.Watch()
				a := h.f.AppliedIndex()
				if v.Epoch < lastEpoch || a < lastApplied {
					errs <- fmt.Errorf("went backwards: epoch %d after %d, applied %d after %d", v.Epoch, lastEpoch, a, lastApplied)
					return
				}
				if !sort.SliceIsSorted(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID }) {
					errs <- fmt.Errorf("members not sorted: %v", v)
					return
				}
				lastEpoch, lastApplied = v.Epoch, a
				if snap, err := h.f.Snapshot(); err == nil {
					_ = snap.Persist(&memSink{})
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("n%03d", i%50)
		switch i / 50 {
		case 0:
			h.apply(viewChange("join", member(id, StatusJoining)))
		case 1:
			h.apply(viewChange("active", member(id, StatusActive)))
		case 2:
			h.apply(viewChange("failed", member(id, StatusFailed)))
		case 3:
			h.apply(viewChange("left", member(id, StatusLeft)))
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := h.f.View(); v.Epoch != 200 || v.Count(StatusLeft) != 50 {
		t.Fatalf("final view %v", v)
	}
}

func TestTransitionErrorMessage(t *testing.T) {
	err := error(&TransitionError{ID: "n1", From: StatusActive, To: StatusJoining})
	if got := err.Error(); !strings.Contains(got, `"n1"`) || !strings.Contains(got, "active -> joining") {
		t.Fatalf("Error() = %q", got)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), ErrIllegalTransition) {
		t.Fatal("wrapped TransitionError does not match ErrIllegalTransition")
	}
}

// seedFlag replays TestDeterminism with one seed: go test -run Determinism -fsm.seed=N
var seedFlag = flag.Int64("fsm.seed", 0, "seed for TestDeterminism (0 = fixed seeds plus a time-based one)")

// randomEntry returns log data for a random command against view v, over a
// small ID pool. Most changes pick a legal next status or repeat the current
// record, so that accepted, illegal, no-op and metadata changes all occur
// often. About one entry in twenty is not a valid command.
func randomEntry(rng *rand.Rand, v View) []byte {
	switch rng.Intn(20) {
	case 0:
		b := make([]byte, rng.Intn(8))
		rng.Read(b)
		return b
	case 1:
		// Valid JSON, invalid target status.
		return rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[{"member":{"id":"n0","role":"client","status":"none"}}]}`)
	}
	vc := ViewChange{
		Reason:             []string{"join", "leave", "failed", "reconcile"}[rng.Intn(4)],
		ProposedAtUnixNano: rng.Int63(),
	}
	for n := 1 + rng.Intn(3); n > 0; n-- {
		id := fmt.Sprintf("n%d", rng.Intn(6))
		cur, _ := v.Member(id) // StatusNone if absent
		m := Member{
			ID:         id,
			GossipAddr: "10.0.0.1:7946",
			HTTPAddr:   []string{"10.0.0.1:8500", "10.0.0.2:8500"}[rng.Intn(2)],
			Role:       RoleClient,
			Zone:       []string{"", "a"}[rng.Intn(2)],
		}
		if rng.Intn(4) == 0 {
			m.Role, m.RaftAddr = RoleServer, "10.0.0.1:8300"
		}
		var next []Status
		for _, s := range allStatuses[1:] {
			if LegalTransition(cur.Status, s) {
				next = append(next, s)
			}
		}
		switch r := rng.Intn(8); {
		case r < 4 && len(next) > 0:
			m.Status = next[rng.Intn(len(next))]
		case r < 6 && cur.Status != StatusNone:
			m = cur // identical record: a no-op change
		case r < 7 && cur.Status != StatusNone:
			m.Status = cur.Status // metadata update or no-op
		default:
			m.Status = allStatuses[1+rng.Intn(len(allStatuses)-1)]
		}
		vc.Changes = append(vc.Changes, Change{Member: m})
	}
	b, err := EncodeViewChange(vc)
	if err != nil {
		panic(err)
	}
	return b
}

// refModel is a naive reference implementation of the view-change rules,
// written independently of applyViewChange: a map instead of a sorted slice
// and the transition table spelled out instead of LegalTransition.
type refModel struct {
	epoch, index uint64
	members      map[string]Member
}

var refLegal = map[[2]Status]bool{
	{StatusNone, StatusJoining}: true, {StatusLeft, StatusJoining}: true,
	{StatusJoining, StatusActive}: true, {StatusJoining, StatusFailed}: true,
	{StatusActive, StatusLeaving}: true, {StatusActive, StatusFailed}: true,
	{StatusLeaving, StatusLeft}: true, {StatusFailed, StatusLeft}: true,
}

// apply returns "ok", "nochange", "illegal" or "invalid".
func (r *refModel) apply(index uint64, data []byte) string {
	_, p, err := DecodeCommand(data)
	if err != nil {
		return "invalid"
	}
	vc := p.(ViewChange)
	work := make(map[string]Member, len(r.members))
	for id, m := range r.members {
		work[id] = m
	}
	changed := false
	for _, c := range vc.Changes {
		w := c.Member
		old, ok := work[w.ID]
		if !ok {
			old = Member{ID: w.ID}
		}
		next := old
		next.GossipAddr, next.RaftAddr, next.HTTPAddr = w.GossipAddr, w.RaftAddr, w.HTTPAddr
		next.Role, next.Zone, next.Version = w.Role, w.Zone, w.Version
		if w.Status == old.Status {
			if next == old {
				continue
			}
		} else {
			if !refLegal[[2]Status{old.Status, w.Status}] {
				return "illegal"
			}
			next.Status = w.Status
			if w.Status == StatusJoining {
				next.Incarnation++
				next.JoinedAt = index
			}
		}
		next.UpdatedAt, next.UpdatedEpoch, next.Reason = index, r.epoch+1, vc.Reason
		work[w.ID] = next
		changed = true
	}
	if !changed {
		return "nochange"
	}
	r.members, r.epoch, r.index = work, r.epoch+1, index
	return "ok"
}

func (r *refModel) view() View {
	v := View{Epoch: r.epoch, Index: r.index}
	for _, m := range r.members {
		v.Members = append(v.Members, m)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID })
	return v
}

func resultKind(err error) string {
	var te *TransitionError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoChange):
		return "nochange"
	case errors.As(err, &te):
		return "illegal"
	case errors.Is(err, ErrInvalidCommand):
		return "invalid"
	}
	return "unexpected: " + err.Error()
}

// TestDeterminism applies the same random log to two FSMs and to the
// reference model, and restores a third FSM from a mid-way snapshot. All
// must agree on every result, every view and the final snapshot bytes.
func TestDeterminism(t *testing.T) {
	seeds := []int64{1, 2, 3, 42, time.Now().UnixNano()}
	if *seedFlag != 0 {
		seeds = []int64{*seedFlag}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: go test -run 'TestDeterminism' ./consensus -fsm.seed=%d", seed)
				}
			})
			rng := rand.New(rand.NewSource(seed))
			a, b := NewFSM(), NewFSM()
			var c *FSM
			ref := &refModel{}
			kinds := map[string]int{}
			const n = 1000
			for i := uint64(1); i <= n; i++ {
				data := randomEntry(rng, a.View())
				ra := a.Apply(raftLog(i, data)).(*ApplyResult)
				rb := b.Apply(raftLog(i, bytes.Clone(data))).(*ApplyResult)
				if !reflect.DeepEqual(ra, rb) {
					t.Fatalf("entry %d: results differ: %+v vs %+v", i, ra, rb)
				}
				kind := resultKind(ra.Err)
				kinds[kind]++
				if want := ref.apply(i, data); kind != want {
					t.Fatalf("entry %d (%q): FSM says %s (%v), reference says %s", i, data, kind, ra.Err, want)
				}
				if got, want := a.View(), ref.view(); !reflect.DeepEqual(got, want) {
					t.Fatalf("entry %d: FSM and reference differ:\n fsm %v\n ref %v", i, got, want)
				}
				if c != nil {
					if rc := c.Apply(raftLog(i, data)).(*ApplyResult); !reflect.DeepEqual(rc, ra) {
						t.Fatalf("entry %d: restored FSM result %+v, want %+v", i, rc, ra)
					}
				}
				if i == n/2 {
					c = NewFSM()
					if err := restoreBytes(c, snapshotBytes(t, a)); err != nil {
						t.Fatalf("restore mid-way snapshot: %v", err)
					}
				}
			}
			sa, sb, sc := snapshotBytes(t, a), snapshotBytes(t, b), snapshotBytes(t, c)
			if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
				t.Fatalf("snapshots differ:\n%s\n%s\n%s", sa, sb, sc)
			}
			// Guard against a generator that stops exercising the rules.
			for _, k := range []string{"ok", "nochange", "illegal", "invalid"} {
				if kinds[k] < n/100 {
					t.Fatalf("only %d %q results in %d entries: %v", kinds[k], k, n, kinds)
				}
			}
			t.Logf("results: %v, final epoch %d", kinds, a.View().Epoch)
		})
	}
}

// fuzzFSM returns an FSM with a few members in different statuses, applied
// at indexes 1..n, and n.
func fuzzFSM(t testing.TB) (*FSM, uint64) {
	h := newHarness(t)
	h.drive("a", StatusJoining, StatusActive)
	h.drive("b", StatusJoining, StatusFailed)
	h.drive("c", StatusJoining, StatusActive, StatusLeaving, StatusLeft)
	h.drive("d", StatusJoining)
	return h.f, h.index
}

func FuzzApply(f *testing.F) {
	add := func(b []byte) { f.Add(uint8(raft.LogCommand), b) }
	add(nil)
	add([]byte{CodecVersion, byte(CmdViewChange)})
	add(mustEncode(f, viewChange("join", member("e", StatusJoining))))
	add(mustEncode(f, viewChange("x", member("a", StatusActive))))                             // no-op
	add(mustEncode(f, viewChange("x", member("b", StatusActive))))                             // illegal
	add(mustEncode(f, viewChange("x", member("c", StatusJoining), member("c", StatusActive)))) // rejoin
	add(mustEncode(f, viewChange("x", member("d", StatusActive), member("e", StatusLeft))))    // half illegal
	add(encodeUnchecked(f, viewChange("x", member("a", StatusNone))))
	f.Add(uint8(raft.LogBarrier), mustEncode(f, viewChange("join", member("e", StatusJoining))))

	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		fsm, last := fuzzFSM(t)
		before, watch := fsm.Watch()
		index := last + 1
		out := fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogType(typ), Data: data})
		res, ok := out.(*ApplyResult)
		if !ok || res == nil || res.Index != index {
			t.Fatalf("Apply returned %#v", out)
		}
		if fsm.AppliedIndex() != index {
			t.Fatalf("AppliedIndex = %d, want %d", fsm.AppliedIndex(), index)
		}
		after := fsm.View()
		if raft.LogType(typ) != raft.LogCommand || res.Err != nil {
			if raft.LogType(typ) != raft.LogCommand && res.Err != nil {
				t.Fatalf("non-command entry returned %v", res.Err)
			}
			if k := resultKind(res.Err); strings.HasPrefix(k, "unexpected") {
				t.Fatalf("error matches no sentinel: %v", res.Err)
			}
			assertUnchanged(t, fsm, before, watch, index, res)
			return
		}
		if after.Epoch != before.Epoch+1 || res.Epoch != after.Epoch || after.Index != index || !isClosed(watch) {
			t.Fatalf("accepted entry: epoch %d->%d (result %d), index %d", before.Epoch, after.Epoch, res.Epoch, after.Index)
		}
		// Whatever was accepted is a state a snapshot can carry.
		g := NewFSM()
		if err := restoreBytes(g, snapshotBytes(t, fsm)); err != nil {
			t.Fatalf("state after %q does not survive a snapshot: %v", data, err)
		}
		if !reflect.DeepEqual(g.View(), after) {
			t.Fatalf("restored view differs")
		}
	})
}

func FuzzRestore(f *testing.F) {
	fsm, _ := fuzzFSM(f)
	f.Add(snapshotBytes(f, fsm))
	f.Add(snapshotBytes(f, NewFSM()))
	f.Add([]byte(`{"version":1,"epoch":1,"index":1,"applied":1,"members":[{"id":"a","gossip_addr":"","http_addr":"","role":"client","status":"joining","incarnation":1,"joined_at":1,"updated_at":1,"updated_epoch":1}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM()
		seedState(t, fsm)
		before, watch := fsm.Watch()
		applied := fsm.AppliedIndex()
		if err := restoreBytes(fsm, data); err != nil {
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("error %v does not wrap ErrInvalidSnapshot", err)
			}
			if !reflect.DeepEqual(fsm.View(), before) || fsm.AppliedIndex() != applied || isClosed(watch) {
				t.Fatal("failed restore changed state")
			}
			return
		}
		// An accepted snapshot re-encodes to one that restores identically.
		again := snapshotBytes(t, fsm)
		g := NewFSM()
		if err := restoreBytes(g, again); err != nil {
			t.Fatalf("re-encoded snapshot rejected: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(g.View(), fsm.View()) || g.AppliedIndex() != fsm.AppliedIndex() {
			t.Fatal("re-encoded snapshot restores differently")
		}
		if !bytes.Equal(snapshotBytes(t, g), again) {
			t.Fatal("snapshot encoding is not a fixpoint")
		}
	})
}
