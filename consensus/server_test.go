package consensus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// startSingle starts a one-voter server on dir and waits for leadership.
func startSingle(t *testing.T, dir string, bootstrap bool) (*Server, *FSM) {
	t.Helper()
	cfg := TestConfig()
	cfg.ID = "n1"
	cfg.BindAddr = "127.0.0.1:0"
	cfg.DataDir = dir
	fsm := NewFSM()
	s, err := NewServer(cfg, fsm)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	if bootstrap {
		if err := s.Bootstrap([]Peer{{ID: "n1", Address: s.Addr(), Voter: true}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leadership")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, fsm
}

// TestServerDurableRestart: entries committed on raft-wal survive a shutdown
// and an in-process reopen of the same directory (the raft-wal meta-store
// trap), and HasState prevents a second bootstrap.
func TestServerDurableRestart(t *testing.T) {
	dir := t.TempDir()
	s, fsm := startSingle(t, dir, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, st := range []Status{StatusJoining, StatusActive} {
		cmd, err := EncodeViewChange(ViewChange{Changes: []Change{{Member: Member{ID: "a", Role: RoleClient, Status: st}}}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Apply(ctx, cmd)
		if err != nil || res.Err != nil {
			t.Fatalf("apply %d: %v / %v", i, err, res)
		}
	}
	want := fsm.View()
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}

	done := make(chan struct{})
	var s2 *Server
	var fsm2 *FSM
	go func() {
		defer close(done)
		cfg := TestConfig()
		cfg.ID, cfg.BindAddr, cfg.DataDir = "n1", "127.0.0.1:0", dir
		fsm2 = NewFSM()
		var err error
		if s2, err = NewServer(cfg, fsm2); err == nil {
			err = s2.Start()
		}
		if err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reopening the data dir hung (raft-wal meta store not closed?)")
	}
	if t.Failed() {
		return
	}
	defer s2.Shutdown()
	if has, err := s2.HasState(); err != nil || !has {
		t.Fatalf("HasState = %v, %v; want true", has, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fsm2.View().Epoch < want.Epoch {
		if time.Now().After(deadline) {
			t.Fatalf("view not restored: epoch %d, want %d", fsm2.View().Epoch, want.Epoch)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := fsm2.View()
	if got.Epoch != want.Epoch || len(got.Members) != 1 || got.Members[0].Status != StatusActive {
		t.Fatalf("restored %v, want %v", got, want)
	}
}

func TestServerApplyNotLeader(t *testing.T) {
	cfg := TestConfig()
	cfg.ID, cfg.BindAddr = "n1", "127.0.0.1:0"
	s, err := NewServer(cfg, NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	_, err = s.Apply(context.Background(), []byte{1})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("apply on unbootstrapped server: %v, want ErrNotLeader", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := TestConfig()
	good.ID, good.BindAddr = "n1", "127.0.0.1:0"
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.ID = "" },
		func(c *Config) { c.BindAddr = "nonsense" },
		func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
		func(c *Config) { c.HeartbeatTimeout = time.Millisecond },
	}
	for i, f := range bad {
		c := good
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted %+v", i, c)
		}
	}
	if err := (VoterConfig{Voters: 4, StabilizationTime: 1, LastContactThreshold: 1, UpdateInterval: 1, ReconcileInterval: 1}).Validate(); err == nil {
		t.Error("4 voters accepted")
	}
}
