package cluster

import (
	"sort"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

// reconcileInput is everything the leader's reconciler looks at. Pure data:
// planReconcile does no I/O and reads no clock.
type reconcileInput struct {
	View    consensus.View
	Gossip  []gossip.Member
	InRaft  map[string]bool // server IDs in the Raft configuration and caught up (may be activated)
	Self    string
	Now     time.Time
	Started time.Time     // when the leader's gossip started
	Grace   time.Duration // MissingMemberGrace
	// FailedAbsentSince: when this leader first saw each Failed member absent
	// from gossip; such a member goes Left once ReapAfter has passed (gossip
	// itself would have reaped it by then).
	FailedAbsentSince map[string]time.Time
	ReapAfter         time.Duration
}

// planReconcile compares gossip with the committed view and returns the
// changes that bring the view in line, as one batch (one epoch). Changes for
// one member may be a sequence (Failed, Left, Joining): the FSM applies them
// in order. Rules:
//
//   - alive, unknown or Left with another boot ID → Joining (a new incarnation);
//     every "→ Joining" below is "→ Joining, Active" for a client
//   - alive, Left with the same boot ID → nothing: it is leaving (Failed → Left
//     clears the boot ID, so a node that was only reaped rejoins)
//   - alive, Failed → Left, Joining (a recovered node rejoins as new incarnation)
//   - alive, Active with another boot ID (restarted before anyone noticed)
//     → Failed, Left, Joining
//   - alive, Leaving or Joining with another boot ID (restarted meanwhile)
//     → Left, Joining (from Joining: Failed, Left, Joining)
//   - alive, Joining, and (a client, or a server in the Raft configuration) → Active
//   - alive, same status, changed addresses/zone/version → metadata update
//   - failed → Failed (from Joining/Active); Leaving → Left
//   - left → Active: Leaving, Left; Joining: Failed, Left; Leaving: Left
//   - absent from gossip (reaped, or never seen since this leader started)
//     after the grace period → Failed (Leaving → Left); Failed → Left once it
//     has been absent for ReapAfter
func planReconcile(in reconcileInput) []consensus.Change {
	var out []consensus.Change
	seen := make(map[string]bool, len(in.Gossip))
	add := func(m consensus.Member, statuses ...consensus.Status) {
		prev := m.Status
		for _, s := range statuses {
			c := m
			c.Status = s
			if prev == consensus.StatusFailed && s == consensus.StatusLeft {
				// An involuntary Left forgets the boot ID: only a node that
				// left on purpose stays Left while its process is alive.
				c.Boot = ""
			}
			out = append(out, consensus.Change{Member: c})
			prev = s
		}
	}
	// join commits a new incarnation after the steps that end the old one.
	// A client needs nothing more before it may be Active (a server must
	// first be caught up in Raft), so it goes Joining and Active in the same
	// epoch: a join storm then costs one epoch per batch, not two.
	join := func(m consensus.Member, before ...consensus.Status) {
		steps := append(before, consensus.StatusJoining)
		if m.Role == consensus.RoleClient {
			steps = append(steps, consensus.StatusActive)
		}
		add(m, steps...)
	}
	for _, g := range in.Gossip {
		seen[g.Name] = true
		if !ValidID(g.Name) {
			continue // cannot be committed; the node's own Start rejects such IDs
		}
		rec, ok := in.View.Member(g.Name)
		want := memberFromGossip(g)
		if !ok {
			rec = consensus.Member{ID: g.Name, Status: consensus.StatusNone}
		}
		// Keep FSM-owned fields so that a metadata comparison is meaningful.
		meta := rec
		meta.GossipAddr, meta.HTTPAddr, meta.RaftAddr = want.GossipAddr, want.HTTPAddr, want.RaftAddr
		meta.Role, meta.Zone, meta.Version, meta.Boot = want.Role, want.Zone, want.Version, want.Boot

		switch g.Status {
		case gossip.StatusAlive:
			switch rec.Status {
			case consensus.StatusNone:
				join(meta)
			case consensus.StatusLeft:
				if rec.Boot != want.Boot {
					join(meta)
				}
			case consensus.StatusFailed:
				join(meta, consensus.StatusLeft)
			case consensus.StatusActive:
				if rec.Boot != "" && rec.Boot != want.Boot {
					join(meta, consensus.StatusFailed, consensus.StatusLeft)
				} else if meta != rec {
					add(meta, consensus.StatusActive)
				}
			case consensus.StatusLeaving:
				if rec.Boot != "" && rec.Boot != want.Boot {
					// A new process: the old one stopped while leaving.
					join(meta, consensus.StatusLeft)
				}
			case consensus.StatusJoining:
				if rec.Boot != "" && rec.Boot != want.Boot {
					join(meta, consensus.StatusFailed, consensus.StatusLeft)
				} else if meta.Role == consensus.RoleClient || in.InRaft[g.Name] {
					add(meta, consensus.StatusActive)
				} else if meta != rec {
					add(meta, consensus.StatusJoining)
				}
			}
		case gossip.StatusFailed:
			switch rec.Status {
			case consensus.StatusJoining, consensus.StatusActive:
				add(rec, consensus.StatusFailed)
			case consensus.StatusLeaving:
				add(rec, consensus.StatusLeft)
			}
		case gossip.StatusLeft:
			switch rec.Status {
			case consensus.StatusActive:
				add(rec, consensus.StatusLeaving, consensus.StatusLeft)
			case consensus.StatusJoining:
				add(rec, consensus.StatusFailed, consensus.StatusLeft)
			case consensus.StatusLeaving:
				add(rec, consensus.StatusLeft)
			}
		}
	}
	if in.Now.Sub(in.Started) >= in.Grace {
		for _, rec := range in.View.Members {
			if seen[rec.ID] || rec.ID == in.Self {
				continue
			}
			switch rec.Status {
			case consensus.StatusJoining, consensus.StatusActive:
				add(rec, consensus.StatusFailed)
			case consensus.StatusLeaving:
				add(rec, consensus.StatusLeft)
			case consensus.StatusFailed:
				if since, ok := in.FailedAbsentSince[rec.ID]; ok && in.Now.Sub(since) >= in.ReapAfter {
					add(rec, consensus.StatusLeft)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Member.ID < out[j].Member.ID })
	return out
}

// memberFromGossip builds the descriptive part of a view record from gossip.
func memberFromGossip(g gossip.Member) consensus.Member {
	role := consensus.RoleClient
	if g.Tags.Role == gossip.RoleServer {
		role = consensus.RoleServer
	}
	m := consensus.Member{
		ID:         g.Name,
		GossipAddr: g.Addr,
		HTTPAddr:   g.Tags.HTTPAddr,
		Role:       role,
		Zone:       g.Tags.Zone,
		Version:    g.Tags.Version,
		Boot:       g.Tags.Boot,
	}
	if role == consensus.RoleServer {
		m.RaftAddr = g.Tags.RaftAddr
	}
	return m
}
