package migration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// memLog and memMover are in-memory twins of the node's Raft log and
// node-to-node transport: they keep just enough state to check the
// coordinator's ordering and outcomes.
type memLog struct {
	mu        sync.Mutex
	next      uint64
	events    []string
	commitErr error
	abortErr  error
	startErr  error
}

type definite struct{ error }

func (definite) Definite() bool { return true }

func (l *memLog) add(e string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	l.events = append(l.events, e)
	return l.next + 100
}

func (l *memLog) Start(_ context.Context, actor, to string) (Record, error) {
	if l.startErr != nil {
		return Record{}, l.startErr
	}
	id := l.add("start " + actor)
	return Record{ID: id, Actor: actor, From: "src", To: to, OldToken: 5}, nil
}

func (l *memLog) Commit(_ context.Context, r Record, rc Receipt) (uint64, error) {
	if l.commitErr != nil {
		return 0, l.commitErr
	}
	return l.add(fmt.Sprintf("commit %s %d", r.Actor, rc.Bytes)), nil
}

func (l *memLog) Abort(_ context.Context, r Record, reason string) (uint64, error) {
	if l.abortErr != nil {
		return 0, l.abortErr
	}
	return l.add("abort " + r.Actor), nil
}

type memMover struct {
	mu         sync.Mutex
	handoffErr error
	events     []string
}

func (m *memMover) Handoff(_ context.Context, r Record) (Receipt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, "handoff "+r.Actor)
	if m.handoffErr != nil {
		return Receipt{}, m.handoffErr
	}
	return Receipt{Checksum: Checksum([]byte("s")), Bytes: 1}, nil
}

func (m *memMover) Activate(_ context.Context, node, actor string, token uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, fmt.Sprintf("activate %s on %s", actor, node))
	return nil
}

func newTestCoord(t *testing.T, l *memLog, m *memMover, now func() time.Time) *Coordinator {
	cfg := DefaultConfig()
	cfg.Now = now
	c, err := New(cfg, l, m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMigrateCommits(t *testing.T) {
	l, m := &memLog{}, &memMover{}
	c := newTestCoord(t, l, m, time.Now)
	out, err := c.Migrate(context.Background(), "a", "dst")
	if err != nil || out.State != "committed" || out.NewToken == 0 {
		t.Fatalf("%+v %v", out, err)
	}
	if fmt.Sprint(l.events) != "[start a commit a 1]" || fmt.Sprint(m.events) != "[handoff a activate a on dst]" {
		t.Fatalf("log %v mover %v", l.events, m.events)
	}
}

func TestMigrateAbortsOnHandoffFailure(t *testing.T) {
	l, m := &memLog{}, &memMover{handoffErr: ErrChecksum}
	c := newTestCoord(t, l, m, time.Now)
	out, err := c.Migrate(context.Background(), "a", "dst")
	if err != nil || out.State != "aborted" || out.NewToken == 0 {
		t.Fatalf("%+v %v", out, err)
	}
	if fmt.Sprint(l.events) != "[start a abort a]" || fmt.Sprint(m.events) != "[handoff a activate a on src]" {
		t.Fatalf("log %v mover %v", l.events, m.events)
	}
}

func TestMigrateCommitRefusedAborts(t *testing.T) {
	l, m := &memLog{commitErr: definite{errors.New("target not active")}}, &memMover{}
	c := newTestCoord(t, l, m, time.Now)
	out, err := c.Migrate(context.Background(), "a", "dst")
	if err != nil || out.State != "aborted" {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestMigrateCommitUnknownLeavesRecord(t *testing.T) {
	l, m := &memLog{commitErr: errors.New("no quorum")}, &memMover{}
	c := newTestCoord(t, l, m, time.Now)
	out, err := c.Migrate(context.Background(), "a", "dst")
	if err == nil || out.ID == 0 || out.State != "" {
		t.Fatalf("want an error with the record for the next leader: %+v %v", out, err)
	}
	if fmt.Sprint(l.events) != "[start a]" {
		t.Fatalf("nothing but the start may be committed: %v", l.events)
	}
}

func TestCooldownAndOneAtATime(t *testing.T) {
	now := time.Unix(100, 0)
	clock := func() time.Time { return now }
	l, m := &memLog{}, &memMover{}
	c := newTestCoord(t, l, m, clock)
	if _, err := c.Migrate(context.Background(), "a", "dst"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Migrate(context.Background(), "a", "src"); !errors.Is(err, ErrCooldown) {
		t.Fatalf("immediate second migration: %v, want ErrCooldown", err)
	}
	now = now.Add(DefaultConfig().Cooldown)
	if _, err := c.Migrate(context.Background(), "a", "src"); err != nil {
		t.Fatalf("after cooldown: %v", err)
	}
	// A start that fails (e.g. no quorum) does not start a cooldown.
	l.startErr = errors.New("no quorum")
	if _, err := c.Migrate(context.Background(), "b", "dst"); err == nil {
		t.Fatal("want the start error")
	}
	l.startErr = nil
	if _, err := c.Migrate(context.Background(), "b", "dst"); err != nil {
		t.Fatalf("b after failed start: %v", err)
	}
	// One at a time.
	if err := c.claim("z"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Migrate(context.Background(), "z", "dst"); !errors.Is(err, ErrInProgress) {
		t.Fatalf("concurrent: %v", err)
	}
}

func TestResumeAborts(t *testing.T) {
	l, m := &memLog{}, &memMover{}
	c := newTestCoord(t, l, m, time.Now)
	outs := c.Resume(context.Background(), []Record{{ID: 9, Actor: "a", From: "src", To: "dst"}, {ID: 10, Actor: "b", From: "src", To: "dst"}})
	if len(outs) != 2 || outs[0].State != "aborted" || outs[1].State != "aborted" {
		t.Fatalf("%+v", outs)
	}
}

// Resume skips a migration this coordinator is driving (and ends it on a
// later call, once nobody drives it), and is not held back by the cooldown
// of an actor that migrated here moments ago: otherwise a migration left
// running by a deposed leader stays running until the next leader change.
func TestResumeSkipsDrivenIgnoresCooldown(t *testing.T) {
	l, m := &memLog{}, &memMover{}
	c := newTestCoord(t, l, m, time.Now) // DefaultConfig: 5 s cooldown
	if _, err := c.Migrate(context.Background(), "a", "dst"); err != nil {
		t.Fatal(err)
	}
	if err := c.claim("a"); !errors.Is(err, ErrCooldown) {
		t.Fatalf("claim right after a migration: %v, want the cooldown", err)
	}
	if outs := c.Resume(context.Background(), []Record{{ID: 9, Actor: "a", From: "src", To: "dst"}}); len(outs) != 1 || outs[0].State != "aborted" {
		t.Fatalf("resume during the cooldown: %+v", outs)
	}
	if err := c.claim("b"); err != nil {
		t.Fatal(err)
	}
	rec := Record{ID: 11, Actor: "b", From: "src", To: "dst"}
	if outs := c.Resume(context.Background(), []Record{rec}); len(outs) != 0 {
		t.Fatalf("resume of a migration being driven here: %+v", outs)
	}
	c.release("b")
	if outs := c.Resume(context.Background(), []Record{rec}); len(outs) != 1 || outs[0].State != "aborted" {
		t.Fatalf("resume once nobody drives it: %+v", outs)
	}
}
