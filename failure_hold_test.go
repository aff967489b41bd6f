package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

// A member whose host still accepts connections (a paused process) keeps
// its Failed verdict out of the batch for FailureHold; one whose port
// refuses (a crashed process) is committed at once; after the hold, the
// verdict commits even if the port still accepts.
func TestHoldPausedTellsPausedFromCrashed(t *testing.T) {
	cfg := TestConfig()
	cfg.NodeID = "leader"
	cfg.BindAddr = "127.0.0.1"
	cfg.FailureHold = 2 * time.Second
	// Read only between holdPaused calls, which log synchronously (New
	// starts no goroutines), so a plain buffer is safe.
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// paused: a listener nobody accepts from; the kernel still completes
	// the handshake, exactly as for a SIGSTOPped process.
	paused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	// crashed: a port that was just closed, so connections are refused.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	crashedAddr := gone.Addr().String()
	gone.Close()

	member := func(id, http string) (gossip.Member, consensus.Member) {
		return gossip.Member{Name: id, Status: gossip.StatusFailed, Tags: gossip.Tags{Role: gossip.RoleClient, HTTPAddr: http}},
			consensus.Member{ID: id, Role: consensus.RoleClient, Status: consensus.StatusFailed}
	}
	gp, cp := member("paused", paused.Addr().String())
	gc, cc := member("crashed", crashedAddr)
	changes := []consensus.Change{{Member: cp}, {Member: cc}}
	now := time.Now()
	in := reconcileInput{Gossip: []gossip.Member{gp, gc}, Now: now}
	holds := failureHolds{}

	got := n.holdPaused(context.Background(), in, changes, holds)
	if len(got) != 1 || got[0].Member.ID != "crashed" {
		t.Fatalf("first pass: changes %v, want only the crashed member's verdict", ids(got))
	}
	if _, ok := holds["paused"]; !ok || len(holds) != 1 {
		t.Fatalf("holds %v, want the paused member only", holds)
	}

	in.Now = now.Add(time.Second) // still within the hold
	if got := n.holdPaused(context.Background(), in, changes, holds); len(got) != 1 || got[0].Member.ID != "crashed" {
		t.Fatalf("within the hold: changes %v", ids(got))
	}

	// A hold is announced (and its end armed) once, not on every pass.
	if c := strings.Count(logs.String(), "holding the verdict"); c != 1 {
		t.Fatalf("the hold was announced %d times in two passes, want once:\n%s", c, logs.String())
	}

	in.Now = now.Add(cfg.FailureHold) // the hold has run out
	if got := n.holdPaused(context.Background(), in, changes, holds); len(got) != 2 {
		t.Fatalf("after the hold: changes %v, want both verdicts", ids(got))
	}

	// A member alive again in gossip is forgotten.
	in.Gossip = []gossip.Member{gc}
	n.holdPaused(context.Background(), in, nil, holds)
	if len(holds) != 0 {
		t.Fatalf("holds %v after the member recovered", holds)
	}

	// FailureHold 0 disables the check.
	n.cfg.FailureHold = 0
	in.Gossip, in.Now = []gossip.Member{gp, gc}, now
	if got := n.holdPaused(context.Background(), in, changes, failureHolds{}); len(got) != 2 {
		t.Fatalf("disabled: changes %v", ids(got))
	}
}

func ids(cs []consensus.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Member.ID)
	}
	return out
}
