package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// A node that knows no leader (a server cut off from the majority, a
// client whose servers are unreachable, or an election in progress) still
// answers status, members and leader from its own committed view, which
// may no longer be the cluster's. kelpiectl says so: leader and members
// exit 1 with the message, status prints it on stderr as a warning (its
// table and JSON describe the node itself, which is still an answer).

// reachability is "no quorum: 1 of 3 voters reachable", counted from the
// node's own gossip view of the Raft voters, or "3 of 3 voters alive by
// gossip" while a quorum of them looks alive (gossip declares a cut-off
// member failed only after its suspicion timeout, up to ~25s on a node that
// gets no confirmations); a client counts servers. "" without members.
func reachability(m *cluster.Members) string {
	var voters, alive, servers, serversAlive int
	for _, r := range m.Members {
		if r.Role != consensus.RoleServer || r.CommittedStatus == consensus.StatusLeft {
			continue
		}
		up := r.GossipStatus == "alive"
		servers++
		if up {
			serversAlive++
		}
		if r.Raft == "voter" {
			voters++
			if up {
				alive++
			}
		}
	}
	switch {
	case voters > 0 && alive < voters/2+1:
		return fmt.Sprintf("no quorum: %d of %d voters reachable", alive, voters)
	case voters > 0:
		return fmt.Sprintf("%d of %d voters alive by gossip", alive, voters)
	case servers > 0:
		return fmt.Sprintf("%d of %d servers alive by gossip", serversAlive, servers)
	}
	return ""
}

// noLeaderMessage is the one-line explanation for a node that knows no
// leader: who, why (as far as its gossip view tells), and what it means for
// its answers. m may be nil.
func noLeaderMessage(s *cluster.Status, m *cluster.Members) string {
	msg := s.NodeID + " knows no leader"
	if s.RaftState != "" {
		msg += " (Raft state " + s.RaftState + ")"
	}
	if m != nil {
		if r := reachability(m); r != "" {
			msg += ": " + r
		}
	}
	return msg + fmt.Sprintf("; its committed view (epoch %d) may be stale", s.Epoch)
}

// leaderless returns the explanation when the node at --addr knows no
// leader, or "" when it knows one (or cannot be asked: the command's own
// request reports that). s and m, if the command already has them, are
// reused; the missing ones are fetched.
func leaderless(c *cli.Context, g globals, cl *cluster.Client, s *cluster.Status, m *cluster.Members) string {
	if s == nil {
		var err error
		if s, err = call(c, g, cl.Status); err != nil {
			return ""
		}
	}
	if s.Leader.Known {
		return ""
	}
	if m == nil {
		m, _ = call(c, g, cl.Members)
	}
	return noLeaderMessage(s, m)
}

// warn prints a warning that does not change the exit code.
func warn(msg string) {
	fmt.Fprintf(os.Stderr, "%s: warning: %s\n", appName, msg)
}
