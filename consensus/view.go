package consensus

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Status is a member's status in the committed view.
//
// Legal transitions (anything else is rejected by the FSM):
//
//	(absent) → Joining
//	Left     → Joining   (a new incarnation)
//	Joining  → Active | Failed
//	Active   → Leaving | Failed
//	Leaving  → Left
//	Failed   → Left
//
// A recovered node therefore rejoins through Left and Joining; it never
// silently turns Active again.
type Status uint8

const (
	StatusNone    Status = iota // not in the view (never joined)
	StatusJoining               // gossip saw it; not yet serving
	StatusActive                // full member: may host actors
	StatusLeaving               // draining before Left
	StatusFailed                // declared dead by the leader
	StatusLeft                  // gone for good (this incarnation)
)

var statusNames = [...]string{"none", "joining", "active", "leaving", "failed", "left"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus is the inverse of String.
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return StatusNone, fmt.Errorf("consensus: unknown status %q", s)
}

// MarshalText encodes a Status as its name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a Status name.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// LegalTransition reports whether a member may move from one status to another.
func LegalTransition(from, to Status) bool {
	switch from {
	case StatusNone, StatusLeft:
		return to == StatusJoining
	case StatusJoining:
		return to == StatusActive || to == StatusFailed
	case StatusActive:
		return to == StatusLeaving || to == StatusFailed
	case StatusLeaving:
		return to == StatusLeft
	case StatusFailed:
		return to == StatusLeft
	}
	return false
}

// Role says whether a member runs Raft.
type Role string

const (
	RoleServer Role = "server" // runs Raft (voter or standby)
	RoleClient Role = "client" // follows the committed state from servers
)

// Member is one node's record in the committed view.
type Member struct {
	ID         string `json:"id"`
	GossipAddr string `json:"gossip_addr"`         // ip:port of serf/memberlist
	RaftAddr   string `json:"raft_addr,omitempty"` // ip:port; empty for clients
	HTTPAddr   string `json:"http_addr"`           // ip:port of the node's HTTP API
	Role       Role   `json:"role"`
	Zone       string `json:"zone,omitempty"`
	Version    string `json:"version,omitempty"`
	// Boot identifies the process incarnation (a random ID chosen at start).
	// A Left record whose Boot matches a live gossip member is a node on its
	// way out, not a rejoin.
	Boot   string `json:"boot,omitempty"`
	Status Status `json:"status"`
	// Incarnation counts how many times this ID has joined; it increases by
	// one on every Joining transition.
	Incarnation uint64 `json:"incarnation"`
	// JoinedAt is the Raft index of the commit that made this incarnation
	// Joining.
	JoinedAt uint64 `json:"joined_at"`
	// UpdatedAt is the Raft index of the last commit that changed the record,
	// and UpdatedEpoch the view epoch it produced.
	UpdatedAt    uint64 `json:"updated_at"`
	UpdatedEpoch uint64 `json:"updated_epoch"`
	// Reason is the human-readable cause of the last status change.
	Reason string `json:"reason,omitempty"`
}

// View is the committed membership view. Members are sorted by ID.
// Left members stay as tombstones (they carry the incarnation history) but
// are not part of the view proper; see InView.
type View struct {
	Epoch   uint64   `json:"epoch"`
	Index   uint64   `json:"index"` // Raft index of the commit that produced Epoch
	Members []Member `json:"members"`
}

// Member returns the record for id.
func (v View) Member(id string) (Member, bool) {
	i := sort.Search(len(v.Members), func(i int) bool { return v.Members[i].ID >= id })
	if i < len(v.Members) && v.Members[i].ID == id {
		return v.Members[i], true
	}
	return Member{}, false
}

// InView reports whether m is part of the view proper (not Left, not None).
func (m Member) InView() bool { return m.Status != StatusLeft && m.Status != StatusNone }

// Count returns how many members have status s.
func (v View) Count(s Status) int {
	n := 0
	for _, m := range v.Members {
		if m.Status == s {
			n++
		}
	}
	return n
}

// Clone returns a deep copy.
func (v View) Clone() View {
	out := v
	out.Members = append([]Member(nil), v.Members...)
	return out
}

// String is a compact debugging form.
func (v View) String() string {
	b, _ := json.Marshal(v)
	return string(b)
}
