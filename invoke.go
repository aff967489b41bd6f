package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/placement"
)

// ErrUnknownOutcome: the request reached the actor's owner, but no answer
// came back (the connection broke or the deadline passed). It may or may not
// have been executed; it is not retried automatically.
var ErrUnknownOutcome = errors.New("outcome unknown")

// InvokeResult is the answer of Invoke.
type InvokeResult struct {
	Node  string          `json:"node"`  // the owner that ran the request
	Token uint64          `json:"token"` // the fencing token it ran under
	Body  json.RawMessage `json:"body"`  // the host's answer (JSON)
}

// BadRequester is implemented by host errors that mean the request itself
// is wrong (HTTP 400, not retried).
type BadRequester interface{ BadRequest() bool }

// hostBody turns a host answer into JSON: as is if it is JSON, else as a
// JSON string.
func hostBody(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// Invoke runs req on the actor's owner, placing the actor first if it has no
// placement. A request is retried only when it surely did not run: the owner
// refused it (stale token, not the owner, fenced) or could not be reached at
// all; once it may have run, a failure is ErrUnknownOutcome.
func (n *Node) Invoke(ctx context.Context, actor string, req []byte) (InvokeResult, error) {
	if err := validateActor(actor); err != nil {
		return InvokeResult{}, err
	}
	backoff := 20 * time.Millisecond
	var last error
	for {
		res, err := n.invokeOnce(ctx, actor, req)
		if err == nil || !retryable(err) {
			return res, err
		}
		last = err
		wait := backoff
		var lp *LeasePendingError
		if errors.As(err, &lp) && lp.RetryAfter > wait {
			wait = lp.RetryAfter
		}
		if !sleepCtx(ctx, wait) {
			return InvokeResult{}, fmt.Errorf("invoke %s: %w (last: %v)", actor, ctx.Err(), last)
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

// retryable: the request surely did not run, and trying again may work.
func retryable(err error) bool {
	var nq *NoQuorumError
	switch {
	case errors.Is(err, errPlacementUnsettled):
		return true
	case errors.Is(err, ErrUnknownOutcome), errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrNoHost):
		return false
	case errors.Is(err, ErrStaleToken), errors.Is(err, ErrNotOwner), errors.Is(err, ErrNotPlaced),
		errors.Is(err, ErrFenced), errors.Is(err, ErrLeasePending), errors.Is(err, ErrNotReady),
		errors.Is(err, ErrNotLeader), errors.As(err, &nq), errors.Is(err, errOwnerUnreachable),
		errors.Is(err, ErrNoEligibleNode), errors.Is(err, ErrNoCapacity), errors.Is(err, ErrMigrating):
		return true
	}
	return false
}

var errOwnerUnreachable = errors.New("owner unreachable")

// errPlacementUnsettled: placing the actor on demand ended with an unknown
// outcome; the invocation did not run and may be retried.
var errPlacementUnsettled = errors.New("placement not settled")

func (n *Node) invokeOnce(ctx context.Context, actor string, req []byte) (InvokeResult, error) {
	p, err := n.ownerOf(ctx, actor)
	if err != nil {
		return InvokeResult{}, err
	}
	var res InvokeResult
	if p.Node == n.cfg.NodeID {
		res, err = n.serveInvoke(ctx, actor, p.Token, req)
	} else {
		res, err = n.invokeRemote(ctx, p, req)
	}
	// A refusal means the cached placement may be out of date (the owner
	// answering "migrating" knows of a migration the cached entry predates),
	// so the next attempt looks it up again.
	if err != nil && (errors.Is(err, ErrStaleToken) || errors.Is(err, ErrNotOwner) || errors.Is(err, ErrNotPlaced) ||
		errors.Is(err, errOwnerUnreachable) || errors.Is(err, ErrFenced) || errors.Is(err, ErrMigrating)) {
		n.pcache.drop(actor)
	}
	return res, err
}

// ownerOf finds the actor's placement (local replica, cache, or a server),
// placing it if it has none.
func (n *Node) ownerOf(ctx context.Context, actor string) (placement.Placement, error) {
	lr, err := n.Lookup(ctx, actor)
	if err != nil {
		return placement.Placement{}, err
	}
	if lr.Found {
		return lr.Placement, nil
	}
	pr, err := n.Place(ctx, actor, PlaceOptions{})
	if err != nil {
		if errors.Is(err, ErrUnknownOutcome) {
			// The request itself has not run; only the placement is
			// unsettled, and Place is idempotent.
			return placement.Placement{}, fmt.Errorf("%w: %v", errPlacementUnsettled, err)
		}
		return placement.Placement{}, err
	}
	return pr.Placement, nil
}

func (n *Node) invokeRemote(ctx context.Context, p placement.Placement, req []byte) (InvokeResult, error) {
	g, ok := n.gossip.Member(p.Node)
	if !ok || g.Tags.HTTPAddr == "" || g.Status.String() != "alive" {
		return InvokeResult{}, fmt.Errorf("%w: %q", errOwnerUnreachable, p.Node)
	}
	c, err := n.peerClient(g.Tags.HTTPAddr)
	if err != nil {
		return InvokeResult{}, err
	}
	ictx, cancel := context.WithTimeout(ctx, n.cfg.InvokeTimeout)
	defer cancel()
	res, err := c.invokeOwner(ictx, p.Actor, p.Token, req)
	if err != nil && isTransport(err) {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return InvokeResult{}, fmt.Errorf("%w: %q: %v", errOwnerUnreachable, p.Node, err)
		}
		return InvokeResult{}, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}
	return res, err
}

// serveInvoke runs a request on this node as the actor's owner under token:
// the lease must be valid, the committed placement must name this node
// (this incarnation) with exactly this token, and the actor is activated
// first if needed (SingleActivation, G4).
func (n *Node) serveInvoke(ctx context.Context, actor string, token uint64, req []byte) (InvokeResult, error) {
	inv, ok := n.host.(Invoker)
	if !ok || n.host == nil {
		return InvokeResult{}, ErrNoHost
	}
	if !n.lease.valid(time.Now()) {
		return InvokeResult{}, fmt.Errorf("%w (node %s)", ErrFenced, n.cfg.NodeID)
	}
	p, err := n.confirmOwnership(ctx, actor, token)
	if err != nil {
		if errors.Is(err, ErrStaleToken) {
			n.metrics.StaleRejections.Inc()
		}
		return InvokeResult{}, err
	}
	var out []byte
	err = n.actors.run(ctx, p, func() error {
		if !n.lease.valid(time.Now()) {
			return fmt.Errorf("%w (node %s)", ErrFenced, n.cfg.NodeID)
		}
		return nil
	}, func() error {
		b, err := inv.Invoke(ctx, actor, p.Token, req)
		out = b
		var br BadRequester
		if errors.As(err, &br) && br.BadRequest() {
			return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrStaleToken) {
			n.metrics.StaleRejections.Inc()
		}
		return InvokeResult{}, err
	}
	return InvokeResult{Node: n.cfg.NodeID, Token: p.Token, Body: hostBody(out)}, nil
}

// confirmOwnership checks that the committed placement of actor is this
// node, this incarnation, with the given token.
func (n *Node) confirmOwnership(ctx context.Context, actor string, token uint64) (placement.Placement, error) {
	self, ok := n.Self()
	if !ok || self.Boot != n.boot || (self.Status != consensus.StatusActive && self.Status != consensus.StatusLeaving) {
		return placement.Placement{}, fmt.Errorf("%w: this node is not active", ErrNotOwner)
	}
	// Read a replica that has applied at least every token we know of for
	// this actor, so an older token is recognised as stale.
	known := max(token, n.actors.tokenOf(actor))
	if p, _, ok := n.pcache.get(actor); ok {
		known = max(known, p.Token)
	}
	var lr LookupResult
	if n.fsm != nil {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		var err error
		lr, err = n.waitPlacement(wctx, actor, known)
		cancel()
		if err != nil {
			return placement.Placement{}, err
		}
	} else if p, _, ok := n.pcache.get(actor); ok && p.Token == token && p.Node == n.cfg.NodeID && p.Incarnation == self.Incarnation {
		lr = LookupResult{Placement: p, Found: true}
	} else {
		err := n.forward(ctx, func(ctx context.Context, c *Client) error {
			r, err := c.Lookup(ctx, actor, false, known)
			lr = r
			return err
		})
		if err != nil {
			return placement.Placement{}, err
		}
		if lr.Found {
			n.pcache.putAt(lr.Placement, lr.Index)
		}
	}
	if !lr.Found {
		return placement.Placement{}, fmt.Errorf("%w: %q", ErrNotPlaced, actor)
	}
	p := lr.Placement
	if err := placement.CheckFence(p.Token, token); err != nil {
		return placement.Placement{}, err
	}
	if p.Token != token || p.Node != n.cfg.NodeID || p.Incarnation != self.Incarnation {
		return placement.Placement{}, fmt.Errorf("%w: %q is on %s (token %d), asked for token %d", ErrNotOwner, actor, p.Node, p.Token, token)
	}
	if p.State == placement.StateMigrating {
		return placement.Placement{}, fmt.Errorf("%w: %q", ErrMigrating, actor)
	}
	return p, nil
}
