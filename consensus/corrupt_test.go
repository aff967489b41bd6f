package consensus

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeEntries starts a single server on dir, applies n view changes,
// optionally snapshots, and shuts it down.
func writeEntries(t *testing.T, dir string, n int, snapshot bool) {
	t.Helper()
	s, _ := startSingle(t, dir, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		st := StatusJoining
		if i%2 == 1 {
			st = StatusActive
		}
		cmd, _ := EncodeViewChange(ViewChange{Changes: []Change{{Member: Member{ID: "m" + string(rune('a'+i/2)), Role: RoleClient, Status: st}}}})
		if _, err := s.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if snapshot {
		if err := s.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

func snapshotFiles(t *testing.T, dir, name string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", name))
	return m
}

func flipByte(t *testing.T, path string, at int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), b...)
	if at < 0 {
		at = int64(len(b)) + at
	}
	b[at] ^= 0xff
	os.WriteFile(path, b, 0o600)
	return orig
}

func startErr(t *testing.T, dir string) error {
	cfg := TestConfig()
	cfg.ID, cfg.BindAddr, cfg.DataDir = "n1", "127.0.0.1:0", dir
	s, err := NewServer(cfg, NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	s.Shutdown()
	return err
}

func TestStartRefusesCorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	writeEntries(t, dir, 6, true)
	states := snapshotFiles(t, dir, "state.bin")
	if len(states) == 0 {
		t.Fatal("no snapshot written")
	}
	flipByte(t, states[0], 20)
	before, _ := os.ReadFile(states[0])
	err := startErr(t, dir)
	if err == nil {
		t.Fatal("started on a corrupt snapshot")
	}
	if !strings.Contains(err.Error(), filepath.Dir(states[0])) {
		t.Errorf("error does not name the snapshot: %v", err)
	}
	after, _ := os.ReadFile(states[0])
	if string(before) != string(after) {
		t.Error("the corrupt snapshot was modified")
	}
	t.Logf("refused: %v", err)
}

func TestStartRefusesCorruptLog(t *testing.T) {
	dir := t.TempDir()
	writeEntries(t, dir, 6, false)
	segs, _ := filepath.Glob(filepath.Join(dir, "raft", "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no wal segment")
	}
	// Corrupt the payload of an early entry (past the segment header).
	flipByte(t, segs[0], 200)
	before, _ := os.ReadFile(segs[0])
	err := startErr(t, dir)
	if err == nil {
		t.Fatal("started on a corrupt log")
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "raft", "wal")) {
		t.Errorf("error does not name the log: %v", err)
	}
	after, _ := os.ReadFile(segs[0])
	if string(before) != string(after) {
		t.Error("the corrupt log was modified")
	}
	t.Logf("refused: %v", err)
}
