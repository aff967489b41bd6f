package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/placement"
)

// PlaceOptions constrain where an actor may go.
type PlaceOptions struct {
	// Prefer names a node to use if it is eligible.
	Prefer string `json:"prefer,omitempty"`
	// Zone, if set, is required.
	Zone string `json:"zone,omitempty"`
	// Labels that the chosen node must carry.
	Labels map[string]string `json:"labels,omitempty"`
}

// PlaceResult is the answer of Place (and PUT /v1/placements/{actor}).
type PlaceResult struct {
	Placement placement.Placement `json:"placement"`
	// Existing: the actor was already placed; this is that placement.
	Existing bool `json:"existing"`
}

// LookupResult is the answer of Lookup (and GET /v1/placements/{actor}).
type LookupResult struct {
	Placement placement.Placement `json:"placement"`
	Found     bool                `json:"found"`
	// Index is the Raft index the answer reflects.
	Index uint64 `json:"index"`
}

// PlacementList is the answer of GET /v1/placements.
type PlacementList struct {
	Placements []placement.Placement `json:"placements"`
	Index      uint64                `json:"index"`
}

// ErrLeasePendingError says when the previous owner's lease surely expires.
type LeasePendingError struct {
	Actor      string
	Node       string
	RetryAfter time.Duration
}

func (e *LeasePendingError) Error() string {
	return fmt.Sprintf("%v: actor %q was on %q; retry in %s", ErrLeasePending, e.Actor, e.Node, e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrLeasePending) true.
func (e *LeasePendingError) Is(target error) bool { return target == ErrLeasePending }

func validateActor(actor string) error {
	if !ValidID(actor) {
		return fmt.Errorf("%w: actor id %q: need 1-128 characters of [A-Za-z0-9._-]", ErrInvalidArgument, actor)
	}
	return nil
}

// Place returns the actor's placement, deciding one if it has none. Any node
// may call it; it is forwarded to the leader, which batches concurrent
// requests into one Raft entry. Placing an already-placed actor returns the
// existing placement. Without a quorum it fails with ErrNoQuorum.
func (n *Node) Place(ctx context.Context, actor string, opts PlaceOptions) (PlaceResult, error) {
	if err := validateActor(actor); err != nil {
		return PlaceResult{}, err
	}
	start := time.Now()
	var res PlaceResult
	var err error
	forward := func() error {
		return n.forward(ctx, func(ctx context.Context, c *Client) error {
			r, err := c.Place(ctx, actor, opts)
			res = r
			return err
		})
	}
	local := false // the answer came from this server's own replica
	if n.raft != nil && n.raft.IsLeader() {
		res, err = n.placeLocal(ctx, actor, opts)
		local = err == nil
		// Leadership ended while the request was queued or committing:
		// Place is idempotent, so ask the new leader. If the entry was
		// proposed (unknown outcome) only a success may replace that
		// answer: a refusal now says nothing about the entry in flight.
		if err != nil && ctx.Err() == nil {
			switch {
			case errors.Is(err, ErrNotLeader), errors.Is(err, context.Canceled):
				err = forward() // the closure sets res
			case errors.Is(err, ErrUnknownOutcome):
				if forward() == nil { // the closure set res
					err = nil
				}
			}
		}
	} else {
		err = forward()
	}
	n.metrics.PlacementRequest(outcomeOf(err), time.Since(start))
	if err == nil && !local {
		// Remember what another server answered (a replica here may not
		// have applied it yet). A local answer is in the replica already.
		n.pcache.put(res.Placement)
	}
	return res, err
}

func outcomeOf(err error) string {
	if err == nil {
		return "ok" // before errors.As, whose target would escape (an allocation per call)
	}
	var nq *NoQuorumError
	switch {
	case errors.As(err, &nq):
		return "no_quorum"
	case errors.Is(err, ErrNotLeader):
		return "not_leader"
	case errors.Is(err, ErrNoCapacity):
		return "no_capacity"
	case errors.Is(err, ErrNoEligibleNode):
		return "no_eligible_node"
	case errors.Is(err, ErrLeasePending):
		return "lease_pending"
	case errors.Is(err, ErrInvalidArgument):
		return "invalid"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return "error"
}

// placeReq is one Place waiting in the leader's group-commit queue.
type placeReq struct {
	actor string
	opts  PlaceOptions
	reply chan placeReply
}

type placeReply struct {
	res PlaceResult
	err error
}

// replyChans recycles the reply channels of placeLocal: a channel goes back
// only once its one reply has been received, so a reused channel is empty
// and nobody else holds it.
var replyChans = sync.Pool{New: func() any { return make(chan placeReply, 1) }}

// placeLocal hands a request to the leader's placer and waits.
func (n *Node) placeLocal(ctx context.Context, actor string, opts PlaceOptions) (PlaceResult, error) {
	if p, ok, _ := n.fsm.Placement(actor); ok {
		return PlaceResult{Placement: p, Existing: true}, nil
	}
	reply := replyChans.Get().(chan placeReply)
	r := placeReq{actor: actor, opts: opts, reply: reply}
	select {
	case n.placeCh <- r:
	case <-ctx.Done():
		replyChans.Put(reply) // never sent: nobody can answer on it
		return PlaceResult{}, ctx.Err()
	}
	select {
	case rep := <-reply:
		replyChans.Put(reply)
		return rep.res, rep.err
	case <-ctx.Done():
		return PlaceResult{}, ctx.Err() // the placer may still answer: drop the channel
	}
}

// placerPipeline is how many place entries the leader keeps committing at
// once. One entry takes a disk write on the leader and on a quorum of
// followers; with several in flight, raft writes the next one while the
// previous one replicates, and requests that arrive meanwhile gather into
// the next batch. More than a few buys nothing: raft itself coalesces the
// entries waiting for its disk into one write.
const placerPipeline = 4

// placer is the state the group-commit loop shares with its in-flight
// commits: how many placements each node has proposed but not yet applied,
// so that batches decided while others are committing see their load
// (least-loaded choice and capacity stay right with a pipeline).
type placer struct {
	mu      sync.Mutex
	pending map[string]int // node → items proposed, not yet answered
}

// runPlacer is the leader's group-commit loop: it takes every request that
// queued while earlier entries were committing, decides them together (one
// goroutine, so decisions see each other) and commits them as one Raft
// entry, with up to placerPipeline entries in flight. The FSM, not this
// loop, keeps placements single: an actor proposed twice by two batches in
// flight is placed by the first and answered as Existing by the second.
func (n *Node) runPlacer(ctx context.Context) {
	pl := &placer{pending: map[string]int{}}
	slots := make(chan struct{}, placerPipeline)
	var inflight sync.WaitGroup
	defer func() {
		inflight.Wait()
		n.failQueued(ErrNotLeader)
	}()
	var batch []placeReq // reused: decidePlace copies what it keeps
	for {
		// Take a slot before a request: while every slot is committing,
		// requests queue up and the next batch is larger.
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		clear(batch)
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-n.placeCh:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < consensus.MaxBatchItems {
			select {
			case r := <-n.placeCh:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		d := n.decidePlace(batch, pl)
		if len(d.items) == 0 {
			<-slots
			continue
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			n.commitBatch(ctx, d, pl)
		}()
	}
}

// failQueued answers everything still queued (leadership ended).
func (n *Node) failQueued(err error) {
	for {
		select {
		case r := <-n.placeCh:
			r.reply <- placeReply{err: err}
		default:
			return
		}
	}
}

// decided is a batch ready to commit: the items, the request that asked for
// each (reqs[i] for items[i]) and any further requests for the same actor.
type decided struct {
	items []consensus.PlaceItem
	reqs  []placeReq
	dups  []dupReq
}

// dupReq is a request for the actor of items[item] that was not the first.
type dupReq struct {
	item int
	r    placeReq
}

// decidePlace answers what it can at once (already placed, lease pending,
// no eligible node) and chooses a node for the rest. It returns the items
// to commit and the requests waiting for them; the items' nodes are counted
// in pl.pending until commitBatch answers them.
func (n *Node) decidePlace(batch []placeReq, pl *placer) decided {
	v := n.fsm.View()
	nodes := n.placementNodes(v)
	ids := make([]string, len(nodes))
	for i, nd := range nodes {
		ids[i] = nd.ID
	}
	// Read the committed loads and the pending ones together: a commit
	// drops its pending count only after the FSM applied it, so a node's
	// placements are counted at least once (never zero times).
	pl.mu.Lock()
	loads := n.fsm.PlacementLoads(ids)
	for _, id := range ids {
		loads[id] += pl.pending[id]
	}
	pl.mu.Unlock()
	now := time.Now()

	d := decided{items: make([]consensus.PlaceItem, 0, len(batch)), reqs: make([]placeReq, 0, len(batch))}
	itemOf := make(map[string]int, len(batch)) // actor → index in d.items
	for _, r := range batch {
		if i, ok := itemOf[r.actor]; ok {
			d.dups = append(d.dups, dupReq{item: i, r: r})
			continue
		}
		if p, ok, _ := n.fsm.Placement(r.actor); ok {
			r.reply <- placeReply{res: PlaceResult{Placement: p, Existing: true}}
			continue
		}
		if o, ok := n.fsm.Orphan(r.actor); ok {
			lastGrant, elected := n.leases.get(o.Node, o.Incarnation)
			if !n.cfg.Lease.SurelyExpired(lastGrant, elected, now) {
				wait := n.cfg.Lease.SurelyExpiredAt(lastGrant, elected).Sub(now)
				r.reply <- placeReply{err: &LeasePendingError{Actor: r.actor, Node: o.Node, RetryAfter: wait}}
				continue
			}
		}
		node, err := placement.Choose(placement.Request{Actor: r.actor, Prefer: r.opts.Prefer, Zone: r.opts.Zone, Labels: r.opts.Labels},
			nodes, func(id string) int { return loads[id] })
		if err != nil {
			r.reply <- placeReply{err: err}
			continue
		}
		loads[node]++
		itemOf[r.actor] = len(d.items)
		d.reqs = append(d.reqs, r)
		d.items = append(d.items, consensus.PlaceItem{Actor: r.actor, Node: node})
	}
	if len(d.items) > 0 {
		pl.mu.Lock()
		for _, it := range d.items {
			pl.pending[it.Node]++
		}
		pl.mu.Unlock()
	}
	return d
}

// commitBatch commits one decided batch and answers its requests.
func (n *Node) commitBatch(ctx context.Context, d decided, pl *placer) {
	n.metrics.PlaceBatch.Observe(float64(len(d.items)))
	res, err := n.commitPlace(ctx, d.items)
	// The FSM has applied the entry (or it failed): its placements are
	// now in the committed loads, or never will be from this proposal.
	pl.mu.Lock()
	for _, it := range d.items {
		if pl.pending[it.Node]--; pl.pending[it.Node] <= 0 {
			delete(pl.pending, it.Node)
		}
	}
	pl.mu.Unlock()
	answer := func(i int) placeReply {
		switch {
		case err != nil:
			return placeReply{err: err}
		case res.Place[i].Err != nil:
			return placeReply{err: res.Place[i].Err}
		}
		return placeReply{res: PlaceResult{Placement: res.Place[i].Placement, Existing: res.Place[i].Existing}}
	}
	for i, r := range d.reqs {
		r.reply <- answer(i)
	}
	for _, dr := range d.dups {
		dr.r.reply <- answer(dr.item)
	}
}

// placementNodes lists the members eligible to host actors: Active in the
// view, alive in gossip, holding a lease this leader granted recently (or
// this leader is too new to have granted any), with capacity and labels
// from gossip tags. Sorted by ID.
func (n *Node) placementNodes(v consensus.View) []placement.NodeInfo {
	now := time.Now()
	var out []placement.NodeInfo
	for _, m := range v.Members {
		if m.Status != consensus.StatusActive || n.draining.has(m.ID) {
			continue
		}
		g, ok := n.gossip.Member(m.ID)
		if !ok || g.Tags.Boot != m.Boot || g.Status.String() != "alive" {
			continue
		}
		lastGrant, elected := n.leases.get(m.ID, m.Incarnation)
		fresh := now.Sub(lastGrant) < n.cfg.Lease.Duration || now.Sub(elected) < n.cfg.Lease.Duration
		info := placement.NodeInfo{ID: m.ID, Zone: m.Zone, Active: fresh, Labels: parseLabels(g.Tags.Labels)}
		if g.Tags.Capacity != "" {
			info.Capacity, _ = strconv.Atoi(g.Tags.Capacity)
		}
		out = append(out, info)
	}
	return out
}

// formatLabels / parseLabels encode labels in one gossip tag: "k=v,k2=v2".
func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func parseLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			out[k] = v
		}
	}
	return out
}

// commitPlace commits a place batch (quorum-gated like every commit).
func (n *Node) commitPlace(ctx context.Context, items []consensus.PlaceItem) (*consensus.ApplyResult, error) {
	cmd, err := consensus.EncodePlace(consensus.PlaceBatch{Items: items, ProposedAtUnixNano: time.Now().UnixNano()})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	start := time.Now()
	res, err := n.applyGated(ctx, cmd)
	if err == nil {
		n.metrics.PlaceCommit.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// Lookup returns the actor's placement as this node knows it: a local read
// of a server's replica (tagged with the index it reflects) or, on a client,
// its cache or a server's answer.
func (n *Node) Lookup(ctx context.Context, actor string) (LookupResult, error) {
	if err := validateActor(actor); err != nil {
		return LookupResult{}, err
	}
	if n.fsm != nil {
		p, ok, idx := n.fsm.Placement(actor)
		return LookupResult{Placement: p, Found: ok, Index: idx}, nil
	}
	if p, idx, ok := n.pcache.get(actor); ok {
		return LookupResult{Placement: p, Found: true, Index: idx}, nil
	}
	var res LookupResult
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		r, err := c.Lookup(ctx, actor, false, 0)
		res = r
		return err
	})
	if err == nil && res.Found {
		n.pcache.putAt(res.Placement, res.Index)
	}
	return res, err
}

// LookupConsistent answers from the leader after verifying its leadership
// with a quorum, so the answer reflects every placement acknowledged before
// the call.
func (n *Node) LookupConsistent(ctx context.Context, actor string) (LookupResult, error) {
	if err := validateActor(actor); err != nil {
		return LookupResult{}, err
	}
	if n.raft != nil && n.raft.IsLeader() {
		vctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
		defer cancel()
		err := n.leaderReady(vctx) // the FSM holds every earlier term's commits
		if err == nil {
			err = n.verifier.verify(vctx)
		}
		if err != nil {
			reach, total := n.reachableVoters()
			return LookupResult{}, &NoQuorumError{Reachable: reach, Total: total, Cause: err}
		}
		p, ok, idx := n.fsm.Placement(actor)
		return LookupResult{Placement: p, Found: ok, Index: idx}, nil
	}
	var res LookupResult
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		r, err := c.Lookup(ctx, actor, true, 0)
		res = r
		return err
	})
	return res, err
}

// waitPlacement returns a server's local placement of actor once its FSM has
// applied at least minIndex (bounded by ctx).
func (n *Node) waitPlacement(ctx context.Context, actor string, minIndex uint64) (LookupResult, error) {
	for {
		ch := n.fsm.WatchPlacements()
		p, ok, idx := n.fsm.Placement(actor)
		if idx >= minIndex {
			return LookupResult{Placement: p, Found: ok, Index: idx}, nil
		}
		t := time.NewTimer(50 * time.Millisecond) // applied index also moves without placement changes
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return LookupResult{}, fmt.Errorf("%w: replica at index %d, need %d", ErrNotReady, idx, minIndex)
		}
		t.Stop()
	}
}

// PlacementsOn lists the placements on node (servers read locally; clients
// ask a server).
func (n *Node) PlacementsOn(ctx context.Context, node string) (PlacementList, error) {
	if n.fsm != nil {
		var ps []placement.Placement
		var idx uint64
		if node == "" {
			ps, idx = n.fsm.Placements()
		} else {
			ps, idx = n.fsm.PlacementsByNode(node)
		}
		return PlacementList{Placements: ps, Index: idx}, nil
	}
	var out PlacementList
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		l, err := c.Placements(ctx, node)
		out = l
		return err
	})
	return out, err
}

// Release removes the actor's placement. The owner deactivates the actor
// first (source first: the actor is never live anywhere once released); an
// owner that cannot be reached makes Release fail rather than risk two live
// copies.
func (n *Node) Release(ctx context.Context, actor string) error {
	if err := validateActor(actor); err != nil {
		return err
	}
	if n.raft != nil && n.raft.IsLeader() {
		if err := n.leaderReady(ctx); err != nil {
			return err
		}
		return n.releaseLocal(ctx, actor)
	}
	err := n.forward(ctx, func(ctx context.Context, c *Client) error { return c.Release(ctx, actor) })
	if err == nil {
		n.pcache.drop(actor)
	}
	return err
}

func (n *Node) releaseLocal(ctx context.Context, actor string) error {
	p, ok, _ := n.fsm.Placement(actor)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotPlaced, actor)
	}
	if err := n.deactivateOn(ctx, p); err != nil {
		return err
	}
	cmd, err := consensus.EncodeRelease(consensus.ReleaseBatch{Items: []consensus.ReleaseItem{{Actor: actor, Token: p.Token}},
		Reason: "release", ProposedAtUnixNano: time.Now().UnixNano()})
	if err != nil {
		return err
	}
	res, err := n.applyGated(ctx, cmd)
	if err != nil {
		return err
	}
	if e := res.Place[0].Err; e != nil {
		return fmt.Errorf("%w: %v", ErrNotPlaced, e)
	}
	return nil
}

// deactivateOn makes p's owner deactivate the actor (up to p.Token).
func (n *Node) deactivateOn(ctx context.Context, p placement.Placement) error {
	if p.Node == n.cfg.NodeID {
		_, _, err := n.actors.deactivate(ctx, p.Actor, p.Token, "released")
		return err
	}
	g, ok := n.gossip.Member(p.Node)
	if !ok || g.Tags.HTTPAddr == "" {
		return fmt.Errorf("owner %q of %q unreachable: not in gossip", p.Node, p.Actor)
	}
	c, err := n.peerClient(g.Tags.HTTPAddr)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
	defer cancel()
	if _, err := c.deactivate(dctx, deactivateRequest{Actor: p.Actor, Token: p.Token}); err != nil {
		return fmt.Errorf("owner %q of %q did not deactivate it: %w", p.Node, p.Actor, err)
	}
	return nil
}

// deactivateRequest is the body of POST /v1/internal/deactivate.
type deactivateRequest struct {
	Actor string `json:"actor"`
	Token uint64 `json:"token"`
}

// deactivateResponse carries the final state back.
type deactivateResponse struct {
	State  []byte `json:"state"`
	Active bool   `json:"was_active"`
}
