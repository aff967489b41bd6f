package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kelpie/cluster/consensus"
)

// maxBlockingWait caps ?wait= on blocking queries.
const maxBlockingWait = 5 * time.Minute

// maxBodyBytes caps request bodies.
const maxBodyBytes = 1 << 20

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("GET /v1/members", n.handleMembers)
	mux.HandleFunc("GET /v1/view", n.handleView)
	mux.HandleFunc("GET /v1/leader", n.handleLeader)
	mux.HandleFunc("GET /v1/voters", n.handleVoters)
	mux.HandleFunc("GET /v1/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /v1/health/ready", n.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /v1/internal/leave", n.handleLeave)
	mux.HandleFunc("GET /v1/internal/raft-health", n.handleRaftHealth)
	n.placementRoutes(mux)
	n.migrationRoutes(mux)
	n.keyringRoutes(mux)
	n.agentRoutes(mux)
	for pattern, h := range n.cfg.Handlers {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s %s", errNotFound, r.Method, r.URL.Path))
	})
	return mux
}

var errNotFound = errors.New("not found")

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError maps an error to an HTTP status and a JSON ErrorBody.
func writeError(w http.ResponseWriter, err error) {
	body := ErrorBody{Error: err.Error(), Code: "internal"}
	code := http.StatusInternalServerError
	var nq *NoQuorumError
	var ae *APIError
	if c, name, ok := placementErrorCode(err); ok && !errors.As(err, &nq) {
		if c == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		body.Code = name
		writeJSON(w, c, body)
		return
	}
	switch {
	case errors.As(err, &nq):
		code, body.Code, body.Reachable, body.Total = http.StatusServiceUnavailable, "no_quorum", nq.Reachable, nq.Total
		w.Header().Set("Retry-After", "1")
	case errors.As(err, &ae):
		code, body = ae.StatusCode, ae.Body
	case errors.Is(err, ErrNotLeader), errors.Is(err, consensus.ErrNotLeader):
		code, body.Code = http.StatusServiceUnavailable, "not_leader"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrNotReady):
		code, body.Code = http.StatusServiceUnavailable, "not_ready"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrUnknownNode):
		code, body.Code = http.StatusNotFound, "unknown_node"
	case errors.Is(err, errNotFound):
		code, body.Code = http.StatusNotFound, "not_found"
	case errors.Is(err, ErrInvalidArgument):
		code, body.Code = http.StatusBadRequest, "invalid_argument"
	case errors.Is(err, ErrNotServer):
		code, body.Code = http.StatusBadRequest, "not_server"
	case errors.Is(err, consensus.ErrIllegalTransition):
		code, body.Code = http.StatusConflict, "illegal_transition"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code, body.Code = http.StatusGatewayTimeout, "timeout"
	case errors.Is(err, ErrClosed):
		code, body.Code = http.StatusServiceUnavailable, "closed"
	}
	writeJSON(w, code, body)
}

// decodeBody decodes a size-limited JSON body, rejecting unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", ErrInvalidArgument, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body: trailing data", ErrInvalidArgument)
	}
	return nil
}

// StatusInfo returns what GET /v1/status serves.
func (n *Node) StatusInfo() Status {
	v := n.View()
	s := Status{
		NodeID:     n.cfg.NodeID,
		Role:       n.role(),
		HTTPAddr:   n.HTTPAddr(),
		GossipAddr: n.GossipAddr(),
		RaftAddr:   n.RaftAddr(),
		Ready:      n.ready() == nil,
		Leader:     n.Leader(),
		Epoch:      v.Epoch,
		ViewIndex:  v.Index,
		Version:    n.cfg.Version,
	}
	if m, ok := v.Member(n.cfg.NodeID); ok && m.Boot == n.boot {
		s.SelfStatus = m.Status
	}
	for _, m := range v.Members {
		if m.InView() {
			s.Members++
		}
	}
	s.GossipDrops = n.gossip.DroppedEvents()
	s.Term = s.Leader.Term
	if n.raft != nil {
		st := n.raft.Stats()
		s.IsLeader = st.State == "Leader"
		s.RaftState, s.Term, s.CommitIndex, s.AppliedIndex = st.State, st.Term, st.CommitIndex, st.AppliedIndex
		s.Voters, _ = n.raft.Configuration()
		n.mu.Lock()
		s.Bootstrapped = n.mu.bootstrapped
		n.mu.Unlock()
	}
	return s
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.StatusInfo())
}

// MembersInfo returns gossip and committed status side by side, sorted by ID.
func (n *Node) MembersInfo() Members {
	v := n.View()
	voters := map[string]bool{}
	inRaft := map[string]bool{}
	if n.raft != nil {
		peers, _ := n.raft.Configuration()
		for _, p := range peers {
			inRaft[p.ID], voters[p.ID] = true, p.Voter
		}
	}
	rows := map[string]*MemberRow{}
	for _, m := range v.Members {
		rows[m.ID] = &MemberRow{ID: m.ID, GossipAddr: m.GossipAddr, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr,
			Role: m.Role, Zone: m.Zone, Version: m.Version, GossipStatus: "unknown",
			CommittedStatus: m.Status, Incarnation: m.Incarnation}
	}
	for _, g := range n.gossip.Members() {
		row, ok := rows[g.Name]
		if !ok {
			gm := memberFromGossip(g)
			row = &MemberRow{ID: g.Name, GossipAddr: g.Addr, HTTPAddr: gm.HTTPAddr, RaftAddr: gm.RaftAddr,
				Role: gm.Role, Zone: gm.Zone, Version: gm.Version, CommittedStatus: consensus.StatusNone}
			rows[g.Name] = row
		}
		row.GossipStatus = g.Status.String()
	}
	out := Members{Epoch: v.Epoch}
	for _, row := range rows {
		switch {
		case row.Role == consensus.RoleClient:
			row.Raft = "client"
		case n.raft == nil:
			row.Raft = "unknown" // clients do not see the Raft configuration
		case voters[row.ID]:
			row.Raft = "voter"
		case inRaft[row.ID]:
			row.Raft = "standby"
		default:
			row.Raft = "none"
		}
		out.Members = append(out.Members, *row)
	}
	sortRows(out.Members)
	return out
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.MembersInfo())
}

// handleView serves the committed view; with ?index=N it blocks until the
// view's index exceeds N or ?wait (default 30s, max 5m) passes. With
// ?delta=1 as well, the answer is a delta from view N when this node
// remembers the changes since it (see viewdelta.go).
func (n *Node) handleView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var index uint64
	if s := q.Get("index"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: index %q: %v", ErrInvalidArgument, s, err))
			return
		}
		index = v
	}
	wait := 30 * time.Second
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeError(w, fmt.Errorf("%w: wait %q: need a duration like 30s", ErrInvalidArgument, s))
			return
		}
		wait = min(d, maxBlockingWait)
	}
	v, set, ch := n.pub.get()
	if index > 0 && set && v.Index <= index {
		t := time.NewTimer(wait)
		defer t.Stop()
	wait:
		for v.Index <= index {
			select {
			case <-ch:
				v, set, ch = n.pub.get()
			case <-t.C:
				break wait
			case <-r.Context().Done():
				return
			case <-n.ctx.Done():
				break wait
			}
		}
	}
	if !set {
		writeError(w, fmt.Errorf("%w: no committed view yet (recovering or not joined)", ErrNotReady))
		return
	}
	var body []byte
	if index > 0 && v.Index >= index && q.Get("delta") == "1" {
		// Also when the wait ran out: "no change" is an empty delta, not
		// the whole view again.
		body, _ = n.pub.encodeDelta(index, v) // nil: changes since index not remembered
	}
	if body == nil {
		var err error
		if body, err = n.pub.encode(v); err != nil {
			writeError(w, fmt.Errorf("encode view: %w", err))
			return
		}
	}
	w.Header().Set("X-Kelpie-Index", strconv.FormatUint(v.Index, 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (n *Node) handleLeader(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Leader())
}

func (n *Node) handleVoters(w http.ResponseWriter, r *http.Request) {
	if n.raft == nil {
		// Clients ask a server.
		if err := n.forward(r.Context(), func(ctx context.Context, c *Client) error {
			v, err := c.Voters(ctx)
			if err == nil {
				writeJSON(w, http.StatusOK, v)
			}
			return err
		}); err != nil {
			writeError(w, err)
		}
		return
	}
	peers, err := n.raft.Configuration()
	if err != nil {
		writeError(w, err)
		return
	}
	out := Voters{Leader: n.Leader().ID, Peers: peers}
	if n.raft.IsLeader() {
		out.Health = n.voters.State()
	}
	writeJSON(w, http.StatusOK, out)
}

// ready is nil when this node is Active in the committed view it serves and
// a leader is known.
func (n *Node) ready() error {
	if !n.caughtUp() {
		return fmt.Errorf("%w: recovering committed state", ErrNotReady)
	}
	m, ok := n.Self()
	if !ok || m.Boot != n.boot || m.Status != consensus.StatusActive {
		return fmt.Errorf("%w: not active in the committed view (status %s)", ErrNotReady, m.Status)
	}
	if n.raft != nil {
		if id, _ := n.raft.Leader(); id == "" {
			return fmt.Errorf("%w: no leader known", ErrNotReady)
		}
	}
	return nil
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := n.ready(); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request) {
	var req leaveRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if !ValidID(req.ID) {
		writeError(w, fmt.Errorf("%w: node id %q", ErrInvalidArgument, req.ID))
		return
	}
	var err error
	if n.raft != nil && n.raft.IsLeader() {
		if err = n.leaderReady(r.Context()); err == nil {
			err = n.leaveMember(r.Context(), req.ID, req.Boot)
		}
	} else {
		err = n.forwardFor(r.Context(), n.cfg.QuorumTimeout+n.cfg.DrainTimeout, func(ctx context.Context, c *Client) error { return c.leave(ctx, req) })
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "left"})
}

func (n *Node) handleRaftHealth(w http.ResponseWriter, r *http.Request) {
	if n.raft == nil {
		writeError(w, ErrNotServer)
		return
	}
	writeJSON(w, http.StatusOK, n.raft.LocalHealth())
}
