package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// Membership leases (G6 LeaseSafety).
//
// Holder side: every Active node asks the leader for a lease every
// Lease.Duration/3 and counts the lease from the moment it sent the request,
// on its own monotonic clock, so its view of the lease ends early. Work is
// refused from the instant the lease ends; shortly before that, if renewals
// keep failing, the node deactivates all its actors (self-fencing).
//
// Leader side: grants only while it is the verified leader (VerifyLeader,
// coalesced across concurrent renewals) and only to an Active member of the
// right incarnation. It remembers its last grant per node; a failed node's
// actors are re-placed only once Lease.SurelyExpired holds.

// leaseRequest is the body of POST /v1/internal/lease.
type leaseRequest struct {
	ID          string `json:"id"`
	Boot        string `json:"boot"`
	Incarnation uint64 `json:"incarnation"`
}

// leaseGrant is its answer.
type leaseGrant struct {
	Term     uint64        `json:"term"`
	Duration time.Duration `json:"duration_ns"`
}

// holderLease is this node's own lease.
type holderLease struct {
	mu      sync.Mutex
	expiry  time.Time // zero: never held
	fenced  bool      // actors deactivated; work refused until renewal
	changed chan struct{}
}

func newHolderLease() *holderLease { return &holderLease{changed: make(chan struct{})} }

// valid reports whether the lease is unexpired at now and the node is not
// fenced.
func (l *holderLease) valid(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.fenced && !l.expiry.IsZero() && now.Before(l.expiry)
}

// remaining is the time left (0 if expired or never held).
func (l *holderLease) remaining(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced || l.expiry.IsZero() || !now.Before(l.expiry) {
		return 0
	}
	return l.expiry.Sub(now)
}

// extend records a grant for a request sent at sentAt.
func (l *holderLease) extend(expiry time.Time) (wasFenced bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if expiry.After(l.expiry) {
		l.expiry = expiry
	}
	wasFenced = l.fenced
	l.fenced = false
	close(l.changed)
	l.changed = make(chan struct{})
	return wasFenced
}

func (l *holderLease) state() (time.Time, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expiry, l.fenced, l.changed
}

// setFenced marks the node fenced; it reports whether it was not already.
func (l *holderLease) setFenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced {
		return false
	}
	l.fenced = true
	return true
}

// LeaseRemaining is how long this node's membership lease has left (0 when
// expired, fenced, or never granted).
func (n *Node) LeaseRemaining() time.Duration { return n.lease.remaining(time.Now()) }

// Fenced reports whether the node has fenced itself.
func (n *Node) Fenced() bool {
	_, f, _ := n.lease.state()
	return f
}

// renewLoop renews this node's lease while it is Active in the view.
func (n *Node) renewLoop() {
	interval := n.cfg.Lease.RenewInterval()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		self, ok := n.Self()
		if ok && self.Boot == n.boot && (self.Status == consensus.StatusActive || self.Status == consensus.StatusLeaving) {
			n.renewOnce(self)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (n *Node) renewOnce(self consensus.Member) {
	sentAt := time.Now()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.Lease.RenewInterval())
	defer cancel()
	req := leaseRequest{ID: n.cfg.NodeID, Boot: n.boot, Incarnation: self.Incarnation}
	var grant leaseGrant
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		g, err := c.lease(ctx, req)
		grant = g
		return err
	})
	if err != nil {
		n.metrics.LeaseRenewals.WithLabelValues("failed").Inc()
		n.logger.Debug("lease renewal failed", "err", err)
		return
	}
	n.metrics.LeaseRenewals.WithLabelValues("granted").Inc()
	if n.lease.extend(n.cfg.Lease.HolderExpiry(sentAt)) {
		n.logger.Info("lease renewed; no longer fenced", "term", grant.Term)
	}
}

// fenceLoop deactivates every local actor when the lease is about to run out
// without renewal. It starts Duration/8 before expiry: by then two renewals
// have failed, and deactivation completes before the leader may re-place.
func (n *Node) fenceLoop() {
	lead := n.cfg.Lease.Duration / 8
	for {
		expiry, fenced, changed := n.lease.state()
		var t *time.Timer
		var timer <-chan time.Time
		if !expiry.IsZero() && !fenced {
			t = time.NewTimer(time.Until(expiry.Add(-lead)))
			timer = t.C
		}
		fired := false
		select {
		case <-n.ctx.Done():
		case <-changed:
		case <-timer:
			fired = true
		}
		if t != nil {
			t.Stop()
		}
		if n.ctx.Err() != nil {
			return
		}
		if !fired {
			continue
		}
		if e, f, _ := n.lease.state(); f || time.Until(e) > lead {
			continue // renewed meanwhile
		}
		if n.lease.setFenced() {
			count := n.actors.deactivateAll(n.ctx, "fenced: lease expiring")
			n.metrics.Fenced.Inc()
			n.logger.Warn("lease expiring without renewal: fenced, actors deactivated", "actors", count)
		}
	}
}

// --- leader side ---

// leaderLeases is the leader's record of grants, reset on every election.
// Grants are per node incarnation: a node that rejoined as a new
// incarnation renews its new lease, not the one that guarded its old
// placements.
type leaderLeases struct {
	mu        sync.Mutex
	electedAt time.Time
	lastGrant map[leaseKey]time.Time
}

type leaseKey struct {
	id          string
	incarnation uint64
}

func (l *leaderLeases) reset(electedAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.electedAt = electedAt
	l.lastGrant = map[leaseKey]time.Time{}
}

func (l *leaderLeases) granted(id string, incarnation uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastGrant == nil {
		l.lastGrant = map[leaseKey]time.Time{}
	}
	l.lastGrant[leaseKey{id, incarnation}] = at
}

// get returns the last grant to (id, incarnation); incarnation 0 means the
// latest grant to any incarnation of id.
func (l *leaderLeases) get(id string, incarnation uint64) (lastGrant, electedAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if incarnation != 0 {
		return l.lastGrant[leaseKey{id, incarnation}], l.electedAt
	}
	for k, t := range l.lastGrant {
		if k.id == id && t.After(lastGrant) {
			lastGrant = t
		}
	}
	return lastGrant, l.electedAt
}

// grantLease runs on the leader for a renewal request.
func (n *Node) grantLease(ctx context.Context, req leaseRequest) (leaseGrant, error) {
	// A new leader's view may still miss what the previous leader
	// committed (a Failed verdict for this very node): wait for it.
	if err := n.leaderReady(ctx); err != nil {
		return leaseGrant{}, err
	}
	m, ok := n.fsm.View().Member(req.ID)
	if !ok || m.Boot != req.Boot || m.Incarnation != req.Incarnation {
		return leaseGrant{}, fmt.Errorf("%w: %q is not this incarnation", ErrUnknownNode, req.ID)
	}
	if m.Status != consensus.StatusActive && m.Status != consensus.StatusLeaving {
		return leaseGrant{}, fmt.Errorf("%w: %q is %s", ErrNotMember, req.ID, m.Status)
	}
	if err := n.verifier.verify(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return leaseGrant{}, err
		}
		return leaseGrant{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	n.leases.granted(req.ID, req.Incarnation, time.Now())
	return leaseGrant{Term: n.raft.Stats().Term, Duration: n.cfg.Lease.Duration}, nil
}

// leaderVerifier coalesces VerifyLeader calls: callers that arrive while a
// verification runs share the next one, which starts after they arrived.
type leaderVerifier struct {
	fn func(context.Context) error

	mu      sync.Mutex
	pending *verifyCall
	running bool
}

type verifyCall struct {
	done chan struct{}
	err  error
}

func (v *leaderVerifier) verify(ctx context.Context) error {
	v.mu.Lock()
	if v.pending == nil {
		v.pending = &verifyCall{done: make(chan struct{})}
	}
	c := v.pending
	if !v.running {
		v.running = true
		go v.run()
	}
	v.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *leaderVerifier) run() {
	for {
		v.mu.Lock()
		c := v.pending
		v.pending = nil
		if c == nil {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.err = v.fn(ctx)
		cancel()
		close(c.done)
	}
}
