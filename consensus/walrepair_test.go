package consensus

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestTailTruncationSurvivesRestart: raft-wal v0.4.0 (hashicorp/raft-wal#31)
// seals a segment truncated inside its tail without an index block, and the
// next open failed every read of it. With repairFiler the log reopens with
// exactly the surviving prefix and the entries written after the truncation.
func TestTailTruncationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)}
	entry := func(i, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("e%d@%d", i, term))}
	}
	st, err := openStores(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, entry(i, 1))
	}
	if err := st.logs.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// A new leader's log conflicts from index 8: raft clears the suffix and
	// appends the leader's entries.
	if err := st.logs.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLogs([]*raft.Log{entry(8, 2), entry(9, 2), entry(10, 2), entry(11, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := st.closer(); err != nil {
		t.Fatal(err)
	}

	st, err = openStores(cfg) // verifyStores reads every entry
	if err != nil {
		t.Fatalf("reopen after a tail truncation: %v", err)
	}
	defer st.closer()
	first, _ := st.logs.FirstIndex()
	last, _ := st.logs.LastIndex()
	if first != 1 || last != 11 {
		t.Fatalf("log spans [%d, %d], want [1, 11]", first, last)
	}
	for i := uint64(1); i <= 11; i++ {
		want := entry(i, 1)
		if i >= 8 {
			want = entry(i, 2)
		}
		var got raft.Log
		if err := st.logs.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if got.Term != want.Term || string(got.Data) != string(want.Data) {
			t.Errorf("entry %d = term %d %q, want term %d %q", i, got.Term, got.Data, want.Term, want.Data)
		}
	}
}
