package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// printJSON writes one indented JSON document.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes one compact JSON document on one line (for streams).
func printJSONLine(v any) error {
	return json.NewEncoder(os.Stdout).Encode(v)
}

func newTable() *tabwriter.Writer {
	return tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
}

// row writes tab-separated cells; empty cells print as "-".
func row(w *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printStatus(s *cluster.Status, x extras) error {
	w := newTable()
	leader := "none known"
	if !s.Leader.Known && x.members != nil {
		if r := reachability(x.members); r != "" {
			leader += " (" + r + ")"
		}
	}
	if s.Leader.Known {
		leader = s.Leader.ID
		if s.Leader.HTTPAddr != "" {
			leader += " (http " + s.Leader.HTTPAddr + ")"
		}
	}
	row(w, "Node", s.NodeID)
	row(w, "Role", string(s.Role))
	row(w, "Version", s.Version)
	row(w, "Ready", yesNo(s.Ready))
	row(w, "Status", s.SelfStatus.String())
	row(w, "HTTP", s.HTTPAddr)
	row(w, "Gossip", s.GossipAddr)
	if s.Role == consensus.RoleServer {
		row(w, "Raft", s.RaftAddr)
		row(w, "Raft state", s.RaftState)
		row(w, "Is leader", yesNo(s.IsLeader))
		row(w, "Bootstrapped", yesNo(s.Bootstrapped))
	}
	row(w, "Leader", leader)
	row(w, "Term", u64(s.Term))
	row(w, "Epoch", u64(s.Epoch))
	row(w, "View index", u64(s.ViewIndex))
	if s.Role == consensus.RoleServer {
		row(w, "Commit index", u64(s.CommitIndex))
		row(w, "Applied index", u64(s.AppliedIndex))
		var vs []string
		for _, p := range s.Voters {
			kind := "standby"
			if p.Voter {
				kind = "voter"
			}
			vs = append(vs, p.ID+" ("+kind+")")
		}
		row(w, "Raft servers", strings.Join(vs, ", "))
	}
	if x.voters != nil && x.voters.Health != nil {
		row(w, "Voters", voterHealth(x.voters))
		row(w, "Failure tolerance", strconv.Itoa(x.voters.Health.FailureTolerance))
	}
	members := strconv.Itoa(s.Members)
	if x.members != nil {
		members = membersSummary(x.members)
	}
	if !s.Leader.Known {
		members += " (committed view may be stale)"
	}
	row(w, "Members", members)
	lease := ""
	if x.leaseOK {
		lease = x.lease.Round(100*time.Millisecond).String() + " remaining"
		if x.lease <= 0 {
			lease = "expired or not held"
		}
	}
	row(w, "Lease", lease)
	row(w, "Gossip drops", u64(s.GossipDrops))
	return w.Flush()
}

func printMembers(m *cluster.Members) error {
	w := newTable()
	row(w, "ID", "GOSSIP ADDR", "HTTP ADDR", "ROLE", "RAFT", "GOSSIP", "COMMITTED", "INC", "ZONE", "VERSION")
	for _, r := range m.Members {
		row(w, r.ID, r.GossipAddr, r.HTTPAddr, string(r.Role), r.Raft, r.GossipStatus,
			r.CommittedStatus.String(), u64(r.Incarnation), r.Zone, r.Version)
	}
	return w.Flush()
}

// printView prints the view as a table; with stamp (watch mode) the header
// carries the local time and a blank line follows.
func printView(v consensus.View, stamp bool) error {
	head := fmt.Sprintf("epoch %d  index %d  members %d", v.Epoch, v.Index, countInView(v))
	if stamp {
		head = time.Now().Format("15:04:05.000") + "  " + head
	}
	fmt.Println(head)
	w := newTable()
	row(w, "ID", "STATUS", "ROLE", "INC", "GOSSIP ADDR", "HTTP ADDR", "EPOCH", "REASON")
	for _, m := range v.Members {
		row(w, m.ID, m.Status.String(), string(m.Role), u64(m.Incarnation), m.GossipAddr, m.HTTPAddr,
			u64(m.UpdatedEpoch), m.Reason)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if stamp {
		fmt.Println()
	}
	return nil
}

func countInView(v consensus.View) int {
	n := 0
	for _, m := range v.Members {
		if m.InView() {
			n++
		}
	}
	return n
}

func printLeader(l *cluster.LeaderInfo) error {
	w := newTable()
	row(w, "ID", "HTTP ADDR", "RAFT ADDR", "TERM")
	row(w, l.ID, l.HTTPAddr, l.RaftAddr, u64(l.Term))
	return w.Flush()
}

func printVoters(v *cluster.Voters) error {
	health := map[string]consensus.ServerState{}
	if v.Health != nil {
		for _, s := range v.Health.Servers {
			health[s.ID] = s
		}
	}
	w := newTable()
	if v.Health != nil {
		row(w, "ID", "ADDRESS", "SUFFRAGE", "LEADER", "HEALTHY", "LAST CONTACT", "LAST INDEX")
	} else {
		row(w, "ID", "ADDRESS", "SUFFRAGE", "LEADER")
	}
	for _, p := range v.Peers {
		suffrage := "standby"
		if p.Voter {
			suffrage = "voter"
		}
		leader := ""
		if p.ID == v.Leader {
			leader = "*"
		}
		if v.Health != nil {
			h, ok := health[p.ID]
			healthy, contact, index := "unknown", "", ""
			if ok {
				healthy, contact, index = yesNo(h.Healthy), h.LastContact, u64(h.LastIndex)
			}
			row(w, p.ID, p.Address, suffrage, leader, healthy, contact, index)
		} else {
			row(w, p.ID, p.Address, suffrage, leader)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if v.Health != nil {
		fmt.Printf("\nhealthy: %s  failure tolerance: %d  target voters: %d\n",
			yesNo(v.Health.Healthy), v.Health.FailureTolerance, v.Health.Target)
	}
	return nil
}
