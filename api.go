package cluster

import (
	"github.com/kelpie/cluster/consensus"
)

// JSON shapes of the HTTP API (/v1/...). They are part of the public
// contract: kelpiectl and other tools decode them.

// LeaderInfo describes the current Raft leader.
type LeaderInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Term     uint64 `json:"term"`
	Known    bool   `json:"known"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	NodeID       string           `json:"node_id"`
	Role         consensus.Role   `json:"role"`
	HTTPAddr     string           `json:"http_addr"`
	GossipAddr   string           `json:"gossip_addr"`
	RaftAddr     string           `json:"raft_addr,omitempty"`
	Ready        bool             `json:"ready"`
	SelfStatus   consensus.Status `json:"self_status"` // this node in the committed view
	Leader       LeaderInfo       `json:"leader"`
	IsLeader     bool             `json:"is_leader"`
	RaftState    string           `json:"raft_state,omitempty"`
	Term         uint64           `json:"term"`
	Epoch        uint64           `json:"epoch"`
	ViewIndex    uint64           `json:"view_index"`
	CommitIndex  uint64           `json:"commit_index,omitempty"`
	AppliedIndex uint64           `json:"applied_index,omitempty"`
	Bootstrapped bool             `json:"bootstrapped"` // this node ran the Raft bootstrap
	Voters       []consensus.Peer `json:"voters,omitempty"`
	Members      int              `json:"members"`      // in the committed view (not Left)
	GossipDrops  uint64           `json:"gossip_drops"` // gossip events dropped (repaired by reconcile)
	Version      string           `json:"version,omitempty"`
}

// MemberRow is one line of GET /v1/members: gossip and committed status side
// by side.
type MemberRow struct {
	ID              string           `json:"id"`
	GossipAddr      string           `json:"gossip_addr"`
	HTTPAddr        string           `json:"http_addr,omitempty"`
	RaftAddr        string           `json:"raft_addr,omitempty"`
	Role            consensus.Role   `json:"role"`
	Raft            string           `json:"raft"` // voter, standby, client, or none (a server not in the Raft configuration)
	Zone            string           `json:"zone,omitempty"`
	Version         string           `json:"version,omitempty"`
	GossipStatus    string           `json:"gossip_status"`    // alive, leaving, left, failed, or unknown
	CommittedStatus consensus.Status `json:"committed_status"` // none if not in the view
	Incarnation     uint64           `json:"incarnation"`
}

// Members is the answer of GET /v1/members.
type Members struct {
	Epoch   uint64      `json:"epoch"`
	Members []MemberRow `json:"members"`
}

// Voters is the answer of GET /v1/voters.
type Voters struct {
	Leader string                `json:"leader"`
	Peers  []consensus.Peer      `json:"peers"`
	Health *consensus.VoterState `json:"health,omitempty"` // only from the leader
}

// ErrorBody is the JSON body of every non-2xx answer.
type ErrorBody struct {
	Error     string `json:"error"`
	Code      string `json:"code"` // no_quorum, not_leader, not_ready, unknown_node, invalid_argument, ...
	Reachable int    `json:"reachable,omitempty"`
	Total     int    `json:"total,omitempty"`
}

// leaveRequest is the body of POST /v1/internal/leave.
type leaveRequest struct {
	ID   string `json:"id"`
	Boot string `json:"boot"`
}
