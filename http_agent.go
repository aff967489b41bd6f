package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// Operator endpoints: make this node leave (POST /v1/agent/leave), take a
// server out of the Raft configuration (DELETE /v1/voters/{id}), and save or
// restore a snapshot of the committed state (http_snapshot.go).

// agentLeaveSlack is added to the bound of an API-driven leave beyond what
// Leave itself may take (the leader's drain and the Left commit).
const agentLeaveSlack = 15 * time.Second

// AgentLeaveResult is the answer of POST /v1/agent/leave.
type AgentLeaveResult struct {
	Status string `json:"status"` // "left"
	Node   string `json:"node"`
}

// VoterRemoval is the answer of DELETE /v1/voters/{id}.
type VoterRemoval struct {
	Removed string `json:"removed"`
	// WasVoter: the removed server had a vote (false for a standby).
	WasVoter bool `json:"was_voter"`
	// Peers is the Raft configuration after the removal.
	Peers []consensus.Peer `json:"peers"`
}

func (n *Node) agentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/agent/leave", n.handleAgentLeave)
	mux.HandleFunc("DELETE /v1/voters/{id}", n.handleRemoveVoter)
	mux.HandleFunc("GET /v1/snapshot", n.handleSnapshotSave)
	mux.HandleFunc("PUT /v1/snapshot", n.handleSnapshotRestore)
}

// LeftCh is closed after this node has left the cluster gracefully because
// an operator asked it to through the HTTP API (POST /v1/agent/leave). The
// embedding program should then Close the node and exit. A Leave called
// directly by the program does not close it.
func (n *Node) LeftCh() <-chan struct{} { return n.left }

// handleAgentLeave makes this node leave gracefully (Leave: drain, commit
// Left, leave gossip), answers, and then signals LeftCh. The leave runs to
// completion even if the caller goes away.
func (n *Node) handleAgentLeave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()),
		n.cfg.QuorumTimeout+n.cfg.DrainTimeout+agentLeaveSlack)
	defer cancel()
	if err := n.Leave(ctx); err != nil {
		writeError(w, err)
		return
	}
	n.logger.Info("left the cluster at an operator's request")
	writeJSON(w, http.StatusOK, AgentLeaveResult{Status: "left", Node: n.cfg.NodeID})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	n.leftOnce.Do(func() { close(n.left) })
}

// RemoveVoter takes server id out of the Raft configuration (voter or
// standby), on the leader (forwarded otherwise). It does not check quorum:
// removing a healthy voter from a cluster with failed ones can leave it
// without a majority; callers check first (kelpiectl does). A live server
// that is removed comes back as a standby through voter management; this is
// for servers that are gone for good. ErrUnknownNode if id is not in the
// configuration.
func (n *Node) RemoveVoter(ctx context.Context, id string) (VoterRemoval, error) {
	if !ValidID(id) {
		return VoterRemoval{}, fmt.Errorf("%w: server id %q", ErrInvalidArgument, id)
	}
	if n.raft != nil && n.raft.IsLeader() {
		return n.removeVoterLocal(ctx, id)
	}
	var out VoterRemoval
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		r, err := c.RemoveVoter(ctx, id)
		out = r
		return err
	})
	return out, err
}

func (n *Node) removeVoterLocal(ctx context.Context, id string) (VoterRemoval, error) {
	peers, err := n.raft.Configuration()
	if err != nil {
		return VoterRemoval{}, err
	}
	out := VoterRemoval{Removed: id}
	found := false
	for _, p := range peers {
		if p.ID == id {
			found, out.WasVoter = true, p.Voter
		}
	}
	if !found {
		return VoterRemoval{}, fmt.Errorf("%w: %q is not in the Raft configuration", ErrUnknownNode, id)
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
	defer cancel()
	if err := n.raft.RemoveServer(rctx, id); err != nil {
		if ctx.Err() == nil && rctx.Err() != nil {
			reach, total := n.reachableVoters()
			return VoterRemoval{}, &NoQuorumError{Reachable: reach, Total: total, Cause: err}
		}
		return VoterRemoval{}, err
	}
	n.logger.Info("server removed from the raft configuration by an operator", "member", id, "was_voter", out.WasVoter)
	if out.Peers, err = n.raft.Configuration(); err != nil {
		return VoterRemoval{}, err
	}
	return out, nil
}

func (n *Node) handleRemoveVoter(w http.ResponseWriter, r *http.Request) {
	out, err := n.RemoveVoter(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
