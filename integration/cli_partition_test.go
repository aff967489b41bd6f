package integration

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
)

// partitionTimeout bounds the failover after the leader is cut off: the
// gossip failure detector declares a partitioned member failed in ~12s (one
// confirmation), then the new leader commits it.
const partitionTimeout = 45 * time.Second

// TestKelpiectlPartitionedLeader is the network-partition variant of the
// frozen-leader check of TestKelpiectlVerbs (issue 6: "a partitioned leader
// is reported correctly"). Three servers and a client run in a private
// network namespace (127.0.0.11-14, see nemesis.PrivateNetns); nftables cuts
// the leader off from every other node while it keeps running. Then, with
// the real kelpiectl binary:
//
//   - against the majority side, leader and status name the new leader, and
//     status and members show the old one failed in the committed view;
//   - against the isolated old leader, leader and members exit 1 with a
//     one-line message saying it knows no leader, how many voters it
//     reaches and that its view may be stale, and status says the same
//     while still printing what the node knows;
//
// after healing, the old leader rejoins as a follower of the new one and
// every node answers members and leader alike.
func TestKelpiectlPartitionedLeader(t *testing.T) {
	t.Parallel()
	if !nemesis.PrivateNetns(t) {
		return
	}
	dir := t.TempDir()
	rec, err := nemesis.NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	c, err := nemesis.NewCluster(kelpiedBin, dir, nemesis.DefaultNodes(), rec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("---- last %d lines of %s ----\n%s", logTailLines, n.Name, n.LogTail(logTailLines))
			}
		}
	})
	network, err := nemesis.NewNet(c.IPs(), rec)
	if err != nil {
		t.Fatalf("nftables in the private namespace: %v", err)
	}
	t.Cleanup(func() { _ = network.Close() })

	all, servers := c.Names(), c.Servers()
	for _, n := range all {
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	_, err = c.WaitConverged(ctx, all)
	cancel()
	if err != nil {
		t.Fatalf("cluster did not form: %v", err)
	}
	at := func(name string) ctlAt { return ctlAt{t: t, addr: httpURL(c.IPs()[name])} }
	old := waitLeaderVia(t, at("c1"), "")
	others := without(servers, old)

	if err := network.Set(nemesis.Isolated(old, all), "isolate the leader "+old); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("leader %s cut off from %v", old, without(all, old))

	t.Run("majority side", func(t *testing.T) {
		var newLeader string
		waitFor(t, partitionTimeout, "a new leader, and the isolated one Failed in its committed view", func() (bool, string) {
			l, r := jsonOf[cluster.LeaderInfo](at(others[0]).with(t).run("leader", "--format", "json"))
			if !l.Known || l.ID == old {
				return false, r.out + r.err
			}
			newLeader = l.ID
			m, r := jsonOf[cluster.Members](at(newLeader).with(t).run("members", "--format", "json"))
			row, ok := rowOf(m, old)
			return ok && row.CommittedStatus == consensus.StatusFailed, r.out + r.err
		})
		t.Logf("new leader %s; %s committed Failed %s after the cut", newLeader, old, time.Since(cut).Round(time.Millisecond))
		for _, n := range others {
			s, _ := jsonOf[cluster.Status](at(n).with(t).run("status", "--format", "json"))
			if !s.Leader.Known || s.Leader.ID != newLeader || (n == newLeader) != s.IsLeader || !s.Ready {
				t.Errorf("status of %s: leader %+v is_leader %v ready %v, want %s", n, s.Leader, s.IsLeader, s.Ready, newLeader)
			}
		}
		waitFor(t, 30*time.Second, "the new leader's status table showing the old one failed and unhealthy", func() (bool, string) {
			out := at(newLeader).with(t).run("status").out
			return lineMatches(out, "Is", "leader", "yes") &&
				strings.Contains(out, "4: 3 active, 1 failed ("+old+")") && strings.Contains(out, old+" (voter, unhealthy)"), out
		})
		out := at(newLeader).with(t).ok("members")
		if !lineMatches(out, old, "failed", "failed") && !lineMatches(out, old, "suspect", "failed") {
			t.Errorf("members table of %s does not show %s failed:\n%s", newLeader, old, out)
		}
		if out := at(others[0]).with(t).ok("leader"); !lineMatches(out, newLeader) {
			t.Errorf("leader table of %s:\n%s", others[0], out)
		}
		// The client may have been following the isolated server; its
		// blocking query has to time out before it moves (FollowWait 30s
		// + 5s).
		waitFor(t, 60*time.Second, "the client's status naming the new leader and the old one failed", func() (bool, string) {
			out := at("c1").with(t).run("status").out
			return strings.Contains(out, newLeader+" (http ") && strings.Contains(out, "4: 3 active, 1 failed ("+old+")"), out
		})
	})

	t.Run("isolated old leader", func(t *testing.T) {
		o := at(old).with(t)
		// Its Raft gave up leadership within the leader lease (0.5s); it
		// then campaigns without a quorum.
		waitFor(t, 15*time.Second, old+" no longer claiming leadership", func() (bool, string) {
			s, r := jsonOf[cluster.Status](o.run("status", "--format", "json"))
			return r.code == 0 && !s.IsLeader && !s.Leader.Known && !s.Ready, r.out + r.err
		})
		// How many voters it reaches is counted from its own gossip view,
		// which declares the others failed only after the suspicion timeout,
		// scaled up by Lifeguard on a node whose probes all fail (30s and
		// more): until then the message gives the count without "no quorum".
		reach := regexp.MustCompile(`: (no quorum: 1 of 3 voters reachable|[23] of 3 voters alive by gossip);`)
		const stale = "; its committed view (epoch "
		r := o.run("leader")
		t.Logf("leader on the isolated %s: exit %d, stderr %q", old, r.code, r.err)
		if !strings.Contains(r.err, old+" knows no leader (Raft state ") || strings.Contains(r.err, "Raft state Leader") ||
			!reach.MatchString(r.err) || !strings.Contains(r.err, stale) {
			t.Errorf("leader on the isolated node: stderr %q, want who, its Raft state, the voters it reaches and that its view may be stale", r.err)
		}
		o.fails(1, old+" knows no leader", "leader")
		if l, r := jsonOf[cluster.LeaderInfo](o.run("leader", "--format", "json")); r.code != 1 || l.Known || !strings.Contains(r.out, `"known": false`) {
			t.Errorf("leader --format json on the isolated node: exit %d, stdout %q", r.code, r.out)
		}
		o.fails(1, old+" knows no leader", "members")
		r = o.run("members")
		if !reach.MatchString(r.err) || !strings.Contains(r.err, stale) || !lineMatches(r.out, old, "alive", "active") {
			t.Errorf("members on the isolated node: exit %d stdout\n%s\nstderr %q; want its own (stale) table and a warning", r.code, r.out, r.err)
		}
		t.Logf("members on the isolated %s (exit %d):\n%sstderr: %s", old, r.code, r.out, r.err)
		if _, r := jsonOf[cluster.Members](o.run("members", "--format", "json")); r.code != 1 || !strings.Contains(r.err, stale) {
			t.Errorf("members --format json on the isolated node: exit %d stderr %q", r.code, r.err)
		}
		r = o.run("status")
		if r.code != 0 || !lineMatches(r.out, "Leader", "none", "known") || !lineMatches(r.out, "Is", "leader", "no") ||
			!lineMatches(r.out, "Ready", "no") || !reach.MatchString(r.err) ||
			!strings.Contains(r.out, "(committed view may be stale)") ||
			!strings.Contains(r.err, stale) {
			t.Errorf("status on the isolated node: exit %d stdout\n%s\nstderr %q", r.code, r.out, r.err)
		}
		t.Logf("status on the isolated %s (exit %d):\n%sstderr: %s", old, r.code, r.out, r.err)
	})

	if err := network.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()

	t.Run("after heal", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), nemesis.ConvergenceBound)
		_, err := c.WaitConverged(ctx, all)
		cancel()
		if err != nil {
			t.Fatalf("after healing: %v", err)
		}
		t.Logf("converged %s after healing", time.Since(healed).Round(time.Millisecond))
		s, _ := jsonOf[cluster.Status](at(old).with(t).run("status", "--format", "json"))
		if s.IsLeader || !s.Leader.Known || s.Leader.ID == old || !s.Ready || s.SelfStatus != consensus.StatusActive {
			t.Errorf("status of the old leader after healing: %+v, want a ready follower", s)
		}
		leader := s.Leader.ID
		// The committed views agree; gossip on the once isolated node may
		// still list members it declared dead until their alive messages
		// reach it (Lifeguard slowed its probing).
		waitFor(t, 30*time.Second, "every node's gossip seeing every member alive", func() (bool, string) {
			for _, n := range all {
				m, r := jsonOf[cluster.Members](at(n).with(t).run("members", "--format", "json"))
				for _, row := range m.Members {
					if row.GossipStatus != "alive" {
						return false, n + ": " + r.out
					}
				}
			}
			return true, ""
		})
		epochs := map[uint64]bool{}
		for _, n := range all {
			a := at(n).with(t)
			if l, r := jsonOf[cluster.LeaderInfo](a.run("leader", "--format", "json")); r.code != 0 || l.ID != leader {
				t.Errorf("leader via %s: %+v (exit %d %s), want %s", n, l, r.code, r.err, leader)
			}
			m, r := jsonOf[cluster.Members](a.run("members", "--format", "json"))
			if r.code != 0 || r.err != "" {
				t.Errorf("members via %s: exit %d stderr %q", n, r.code, r.err)
			}
			for _, row := range m.Members {
				if row.CommittedStatus != consensus.StatusActive || row.GossipStatus != "alive" {
					t.Errorf("members via %s: %+v", n, row)
				}
			}
			epochs[m.Epoch] = true
		}
		if len(epochs) != 1 {
			t.Errorf("members epochs differ between nodes: %v", epochs)
		}
		if out := at(old).with(t).ok("members"); !lineMatches(out, old, "alive", "active") {
			t.Errorf("members table of the old leader:\n%s", out)
		}
	})
}
