package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/migration"
	"github.com/kelpie/cluster/placement"
)

// MigrationInfo is one migration as the API shows it.
type MigrationInfo = consensus.Migration

// MigrationOutcome is how Migrate ended.
type MigrationOutcome = migration.Outcome

// DrainResult says what Drain did.
type DrainResult struct {
	Node     string   `json:"node"`
	Moved    int      `json:"moved"`
	Failed   []string `json:"failed,omitempty"` // actors still on the node
	Duration string   `json:"duration"`
	// Error and Code are set when the drain is incomplete (HTTP 409), as in
	// every error answer.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// Migrate moves actor to node to (G7): committed with the actor active on
// the target with exactly the source's final state, or aborted with the
// actor back on its source. Forwarded to the leader. Without quorum it fails
// with ErrNoQuorum.
func (n *Node) Migrate(ctx context.Context, actor, to string) (MigrationOutcome, error) {
	if err := validateActor(actor); err != nil {
		return MigrationOutcome{}, err
	}
	if !ValidID(to) {
		return MigrationOutcome{}, fmt.Errorf("%w: target %q", ErrInvalidArgument, to)
	}
	if n.raft != nil && n.raft.IsLeader() {
		if err := n.leaderReady(ctx); err != nil {
			return MigrationOutcome{}, err
		}
		return n.coord.Migrate(ctx, actor, to)
	}
	var out MigrationOutcome
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		o, err := c.Migrate(ctx, actor, to)
		out = o
		return err
	})
	return out, err
}

// Migrations lists running and recently finished migrations, filtered by
// state ("" for all): running, committed, aborted.
func (n *Node) Migrations(ctx context.Context, state string) ([]MigrationInfo, error) {
	switch state {
	case "", consensus.MigrationRunning, consensus.MigrationCommitted, consensus.MigrationAborted:
	default:
		return nil, fmt.Errorf("%w: state %q (want running, committed or aborted)", ErrInvalidArgument, state)
	}
	if n.fsm == nil {
		var out []MigrationInfo
		err := n.forward(ctx, func(ctx context.Context, c *Client) error {
			l, err := c.Migrations(ctx, state)
			out = l
			return err
		})
		return out, err
	}
	running, finished := n.fsm.Migrations()
	out := []MigrationInfo{}
	for _, m := range append(running, finished...) {
		if state == "" || m.State == state {
			out = append(out, m)
		}
	}
	return out, nil
}

// Drain migrates every actor off node (to nodes the policy picks), at most
// Config.DrainConcurrency at a time, until done or ctx ends. New placements
// avoid the node while it drains. Forwarded to the leader.
func (n *Node) Drain(ctx context.Context, node string) (DrainResult, error) {
	if !ValidID(node) {
		return DrainResult{}, fmt.Errorf("%w: node %q", ErrInvalidArgument, node)
	}
	if n.raft != nil && n.raft.IsLeader() {
		if err := n.leaderReady(ctx); err != nil {
			return DrainResult{}, err
		}
		return n.drainLocal(ctx, node)
	}
	var out DrainResult
	err := n.forwardFor(ctx, n.cfg.QuorumTimeout+n.cfg.DrainTimeout, func(ctx context.Context, c *Client) error {
		r, err := c.Drain(ctx, node)
		out = r
		return err
	})
	return out, err
}

// draining is the leader's set of nodes being drained (excluded from
// placement).
type drainSet struct {
	mu    sync.Mutex
	nodes map[string]int
}

func (d *drainSet) add(node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodes == nil {
		d.nodes = map[string]int{}
	}
	d.nodes[node]++
}

func (d *drainSet) done(node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodes[node]--; d.nodes[node] <= 0 {
		delete(d.nodes, node)
	}
}

func (d *drainSet) has(node string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[node] > 0
}

func (n *Node) drainLocal(ctx context.Context, node string) (DrainResult, error) {
	if m, ok := n.fsm.View().Member(node); !ok || m.Status == consensus.StatusLeft || m.Status == consensus.StatusNone {
		return DrainResult{}, fmt.Errorf("%w: %q", ErrUnknownNode, node)
	}
	start := time.Now()
	n.draining.add(node)
	defer n.draining.done(node)
	res := DrainResult{Node: node}
	// Moved counts the actors that were here and are not any more: a
	// migration whose commit outcome was unknown to the round that ran it
	// (a leader change) still counts once it is applied.
	seen := map[string]bool{}
	for round := 0; ctx.Err() == nil; round++ {
		ps, _ := n.fsm.PlacementsByNode(node)
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			seen[p.Actor] = true
		}
		moved, noTarget := n.migrateAway(ctx, ps, node)
		if moved == 0 {
			// Nothing moved this round. Migrations refused for a while
			// (cooldown, one already running, an abort) are retried until
			// ctx ends; only "no other node can take them" ends the drain
			// early, after one more look.
			if noTarget == len(ps) && round > 0 {
				break
			}
			if !sleepCtx(ctx, 250*time.Millisecond) {
				break
			}
		}
	}
	ps, _ := n.fsm.PlacementsByNode(node)
	for _, p := range ps {
		res.Failed = append(res.Failed, p.Actor)
		delete(seen, p.Actor)
	}
	res.Moved = len(seen)
	res.Duration = time.Since(start).Round(time.Millisecond).String()
	n.logger.Info("drain finished", "target", node, "moved", res.Moved, "left", len(res.Failed))
	if len(res.Failed) > 0 {
		return res, fmt.Errorf("drain of %s: %d actors still there: %w", node, len(res.Failed), ctxErrOr(ctx, errors.New("migrations failed")))
	}
	return res, nil
}

func ctxErrOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// migrateAway migrates each placement off node concurrently and returns how
// many committed and how many found no target at all.
func (n *Node) migrateAway(ctx context.Context, ps []placement.Placement, node string) (moved, noTarget int) {
	sem := make(chan struct{}, n.cfg.DrainConcurrency)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range ps {
		if p.State == placement.StateMigrating {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return moved, noTarget
		}
		wg.Add(1)
		go func(p placement.Placement) {
			defer wg.Done()
			defer func() { <-sem }()
			to, err := placement.Choose(placement.Request{Actor: p.Actor}, n.placementNodes(n.fsm.View()), n.fsm.PlacementCount)
			if err != nil {
				n.logger.Warn("drain: no target", "actor", p.Actor, "err", err)
				mu.Lock()
				noTarget++
				mu.Unlock()
				return
			}
			out, err := n.coord.Migrate(ctx, p.Actor, to)
			if err == nil && out.State == "committed" {
				mu.Lock()
				moved++
				mu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	return moved, noTarget
}

// --- migration.Log over Raft ---

type migLog struct{ n *Node }

// refusedError marks an FSM refusal: nothing was committed.
type refusedError struct{ error }

func (refusedError) Definite() bool  { return true }
func (e refusedError) Unwrap() error { return e.error }

func (l migLog) apply(ctx context.Context, t consensus.CommandType, payload any) (*consensus.Migration, error) {
	cmd, err := consensus.Encode(t, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	res, err := l.n.applyGated(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		if errors.Is(res.Err, consensus.ErrMigrating) {
			return nil, refusedError{fmt.Errorf("%w: %v", ErrMigrating, res.Err)}
		}
		if errors.Is(res.Err, consensus.ErrNotPlaced) {
			return nil, refusedError{fmt.Errorf("%w: %v", ErrNotPlaced, res.Err)}
		}
		if errors.Is(res.Err, consensus.ErrNodeNotActive) {
			return nil, refusedError{fmt.Errorf("%w: %v", ErrNoEligibleNode, res.Err)}
		}
		if errors.Is(res.Err, consensus.ErrInvalidCommand) {
			return nil, refusedError{fmt.Errorf("%w: %v", ErrInvalidArgument, res.Err)}
		}
		if errors.Is(res.Err, consensus.ErrNoMigration) {
			return nil, refusedError{fmt.Errorf("%w: %v", ErrNotPlaced, res.Err)}
		}
		return nil, refusedError{res.Err}
	}
	return res.Migration, nil
}

func (l migLog) Start(ctx context.Context, actor, to string) (migration.Record, error) {
	p, ok, _ := l.n.fsm.Placement(actor)
	if !ok {
		return migration.Record{}, fmt.Errorf("%w: %q", ErrNotPlaced, actor)
	}
	m, err := l.apply(ctx, consensus.CmdMigrationStart, consensus.MigrationStart{Actor: actor, To: to, Token: p.Token, ProposedAtUnixNano: time.Now().UnixNano()})
	if err != nil {
		return migration.Record{}, err
	}
	l.n.metrics.MigrationStarted()
	return recordOf(*m), nil
}

func (l migLog) Commit(ctx context.Context, r migration.Record, rc migration.Receipt) (uint64, error) {
	m, err := l.apply(ctx, consensus.CmdMigrationCommit, consensus.MigrationEnd{Actor: r.Actor, ID: r.ID, Checksum: rc.Checksum, Bytes: rc.Bytes, ProposedAtUnixNano: time.Now().UnixNano()})
	if err != nil {
		return 0, err
	}
	l.n.metrics.MigrationEnded("committed", time.Duration(m.EndedAt-m.StartedAt), m.Bytes)
	return m.NewToken, nil
}

func (l migLog) Abort(ctx context.Context, r migration.Record, reason string) (uint64, error) {
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	m, err := l.apply(ctx, consensus.CmdMigrationAbort, consensus.MigrationEnd{Actor: r.Actor, ID: r.ID, Reason: reason, ProposedAtUnixNano: time.Now().UnixNano()})
	if err != nil {
		return 0, err
	}
	l.n.metrics.MigrationEnded("aborted", time.Duration(m.EndedAt-m.StartedAt), 0)
	return m.NewToken, nil
}

func recordOf(m consensus.Migration) migration.Record {
	return migration.Record{ID: m.ID, Actor: m.Actor, From: m.From, To: m.To, OldToken: m.OldToken, OldMigration: m.OldMigration}
}

// --- migration.Mover over node-to-node HTTP ---

type migMover struct{ n *Node }

// handoffRequest is the body of POST /v1/internal/migrate/handoff.
type handoffRequest struct {
	Record     migration.Record `json:"record"`
	TargetHTTP string           `json:"target_http"`
}

// activateRequest is the body of POST /v1/internal/migrate/activate.
type activateRequest struct {
	Actor string `json:"actor"`
	Token uint64 `json:"token"`
}

func (m migMover) Handoff(ctx context.Context, r migration.Record) (migration.Receipt, error) {
	target, err := m.n.memberClient(r.To)
	if err != nil {
		return migration.Receipt{}, err
	}
	req := handoffRequest{Record: r, TargetHTTP: target.Addr()}
	if r.From == m.n.cfg.NodeID {
		return m.n.handoffLocal(ctx, req)
	}
	src, err := m.n.memberClient(r.From)
	if err != nil {
		return migration.Receipt{}, err
	}
	return src.handoff(ctx, req)
}

func (m migMover) Activate(ctx context.Context, node, actor string, token uint64) error {
	if node == m.n.cfg.NodeID {
		return m.n.activateOwned(ctx, actor, token)
	}
	c, err := m.n.memberClient(node)
	if err != nil {
		return err
	}
	return c.activate(ctx, activateRequest{Actor: actor, Token: token})
}

// memberClient returns a client for a member's HTTP API (from gossip).
func (n *Node) memberClient(id string) (*Client, error) {
	g, ok := n.gossip.Member(id)
	if !ok || g.Tags.HTTPAddr == "" || g.Status.String() != "alive" {
		return nil, fmt.Errorf("%w: %q", errOwnerUnreachable, id)
	}
	return n.peerClient(g.Tags.HTTPAddr)
}

// handoffLocal runs the source's half: deactivate, park, send to the target.
func (n *Node) handoffLocal(ctx context.Context, req handoffRequest) (migration.Receipt, error) {
	r := req.Record
	state, err := n.actors.handoff(ctx, r.Actor, r.OldToken, r.OldMigration, r.ID)
	if err != nil {
		return migration.Receipt{}, err
	}
	if int64(len(state)) > n.cfg.MaxStateBytes {
		return migration.Receipt{}, fmt.Errorf("%w: %s is %d bytes, limit %d", migration.ErrTooLarge, r.Actor, len(state), n.cfg.MaxStateBytes)
	}
	var buf bytes.Buffer
	corrupt := n.testCorruptTransfer != nil && n.testCorruptTransfer(r.Actor)
	if err := migration.WriteFrame(&buf, migration.Header{Migration: r.ID, Actor: r.Actor}, state, corrupt); err != nil {
		return migration.Receipt{}, err
	}
	c, err := n.peerClient(req.TargetHTTP)
	if err != nil {
		return migration.Receipt{}, err
	}
	if err := c.stage(ctx, &buf); err != nil {
		return migration.Receipt{}, fmt.Errorf("target %s refused the state: %w", r.To, err)
	}
	return migration.Receipt{Checksum: migration.Checksum(state), Bytes: int64(len(state))}, nil
}

// activateOwned activates actor here under token if the committed placement
// says so (used right after a migration commits or aborts).
func (n *Node) activateOwned(ctx context.Context, actor string, token uint64) error {
	if !n.lease.valid(time.Now()) {
		return ErrFenced
	}
	p, err := n.confirmOwnership(ctx, actor, token)
	if err != nil {
		return err
	}
	return n.actors.run(ctx, p, func() error {
		if !n.lease.valid(time.Now()) {
			return ErrFenced
		}
		return nil
	}, func() error { return nil })
}

func (n *Node) migrationRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/migrations", n.handleMigrate)
	mux.HandleFunc("GET /v1/migrations", n.handleMigrations)
	mux.HandleFunc("POST /v1/nodes/{id}/drain", n.handleDrain)
	mux.HandleFunc("POST /v1/internal/migrate/handoff", n.handleHandoff)
	mux.HandleFunc("POST /v1/internal/migrate/stage", n.handleStage)
	mux.HandleFunc("POST /v1/internal/migrate/activate", n.handleActivate)
}

// migrateRequest is the body of POST /v1/migrations.
type migrateRequest struct {
	Actor string `json:"actor"`
	To    string `json:"to"`
}

func (n *Node) handleMigrate(w http.ResponseWriter, r *http.Request) {
	var req migrateRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	out, err := n.Migrate(r.Context(), req.Actor, req.To)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleMigrations(w http.ResponseWriter, r *http.Request) {
	l, err := n.Migrations(r.Context(), r.URL.Query().Get("state"))
	if err != nil {
		writeError(w, err)
		return
	}
	sort.SliceStable(l, func(i, j int) bool { return l[i].ID < l[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"migrations": l})
}

func (n *Node) handleDrain(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeError(w, fmt.Errorf("%w: timeout %q", ErrInvalidArgument, s))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	res, err := n.Drain(ctx, r.PathValue("id"))
	if err != nil && res.Node == "" {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if err != nil {
		code = http.StatusConflict
		res.Error, res.Code = err.Error(), "drain_incomplete"
	}
	writeJSON(w, code, res)
}

func (n *Node) handleHandoff(w http.ResponseWriter, r *http.Request) {
	var req handoffRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if validateActor(req.Record.Actor) != nil || req.Record.ID == 0 || req.Record.OldToken == 0 {
		writeError(w, fmt.Errorf("%w: bad handoff record", ErrInvalidArgument))
		return
	}
	rc, err := n.handoffLocal(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rc)
}

func (n *Node) handleStage(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, n.cfg.MaxStateBytes+64<<10)
	h, state, err := migration.ReadFrame(body, n.cfg.MaxStateBytes)
	if err != nil {
		if errors.Is(err, migration.ErrChecksum) {
			n.metrics.ChecksumFailures.Inc()
		}
		writeError(w, fmt.Errorf("%w: %v", ErrInvalidArgument, err))
		return
	}
	if err := n.actors.stage(h.Actor, h.Migration, state); err != nil {
		writeError(w, err)
		return
	}
	n.logger.Info("migration state staged", "actor", h.Actor, "migration", h.Migration, "bytes", len(state))
	writeJSON(w, http.StatusOK, map[string]string{"status": "staged", "checksum": migration.Checksum(state)})
}

func (n *Node) handleActivate(w http.ResponseWriter, r *http.Request) {
	var req activateRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if validateActor(req.Actor) != nil || req.Token == 0 {
		writeError(w, fmt.Errorf("%w: actor %q token %d", ErrInvalidArgument, req.Actor, req.Token))
		return
	}
	if err := n.activateOwned(r.Context(), req.Actor, req.Token); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "active", "token": strconv.FormatUint(req.Token, 10)})
}
