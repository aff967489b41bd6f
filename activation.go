package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/kelpie/cluster/placement"
)

// Invoker is implemented by hosts that accept work for their actors through
// the library (Node.Invoke and POST /v1/actors/{id}/invoke route requests to
// the actor's owner, which calls Invoke). token is the fencing token of the
// activation the request is for.
type Invoker interface {
	Invoke(ctx context.Context, actor string, token uint64, req []byte) ([]byte, error)
}

// localActors tracks which actors this node has activated, under which
// token. Each actor has its own lock so that activations, invocations and
// deactivations of one actor are serialised without blocking others.
type localActors struct {
	host   Host
	logger *slog.Logger

	mu    sync.Mutex
	slots map[string]*actorSlot
}

type actorSlot struct {
	mu     sync.Mutex
	active bool
	token  uint64
	// floor: tokens ≤ floor were deactivated on purpose (release or
	// migration) and must never be activated again here.
	floor uint64
	// held is state kept for the activation a migration produces: parked
	// on the source (used if the migration aborts) or staged on the target
	// (used once it commits). holdFor is that migration's ID.
	held    []byte
	holdFor uint64
	// fenced is the final state of an activation stopped by self-fencing,
	// kept for the same placement (fencedToken) if the lease is renewed
	// before anyone else gets the actor, or for a migration handing it off.
	fenced      []byte
	fencedToken uint64
}

func newLocalActors(host Host, logger *slog.Logger) *localActors {
	return &localActors{host: host, logger: logger, slots: map[string]*actorSlot{}}
}

func (a *localActors) slot(actor string) *actorSlot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.slots[actor]
	if !ok {
		s = &actorSlot{}
		a.slots[actor] = s
	}
	return s
}

// active returns the activated actors and their tokens, sorted by actor.
func (a *localActors) active() []placement.Placement {
	a.mu.Lock()
	names := make([]string, 0, len(a.slots))
	slots := make([]*actorSlot, 0, len(a.slots))
	for name, s := range a.slots {
		names = append(names, name)
		slots = append(slots, s)
	}
	a.mu.Unlock()
	var out []placement.Placement
	for i, s := range slots {
		s.mu.Lock()
		if s.active {
			out = append(out, placement.Placement{Actor: names[i], Token: s.token, State: placement.StateActive})
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Actor < out[j].Actor })
	return out
}

// tokenOf returns the highest token this node has activated (or refused)
// the actor with.
func (a *localActors) tokenOf(actor string) uint64 {
	s := a.slot(actor)
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.token, s.floor)
}

// run executes fn for the actor's activation under placement p, activating
// it first if needed. allowed is checked under the actor's lock right before
// an activation (the lease test), so a concurrent fence cannot be overtaken.
// A placement produced by a migration activates with the state that
// migration left here; a newer placement of an actor already live here keeps
// the live instance.
func (a *localActors) run(ctx context.Context, p placement.Placement, allowed func() error, fn func() error) error {
	if a.host == nil {
		return ErrNoHost
	}
	actor, token := p.Actor, p.Token
	s := a.slot(actor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if token <= s.floor {
		return &placement.StaleTokenError{Current: s.floor + 1, Presented: token}
	}
	if s.active && token < s.token {
		return &placement.StaleTokenError{Current: s.token, Presented: token}
	}
	if err := allowed(); err != nil {
		return err
	}
	if s.active && token > s.token {
		// A newer placement of an actor that is live here (a migration
		// aborted before the source let go of it). Every path that moves an
		// actor away deactivates it here first, so this instance is still
		// the actor: keep it and take the new token.
		a.logger.Info("actor keeps running under a newer token", "actor", actor, "old_token", s.token, "token", token)
		s.token = token
		s.held, s.holdFor = nil, 0
	}
	if !s.active {
		var state []byte
		switch {
		case p.Migration != 0 && s.holdFor == p.Migration:
			state = s.held
		case s.fencedToken == token:
			state = s.fenced // the same placement, resumed after a renewed lease
		case p.Migration != 0 && s.fencedToken != 0:
			// A migration away from here aborted before its handoff reached
			// this node (a commit to here always stages first, so holdFor
			// would match): the actor never ran elsewhere, so it continues
			// with the state it had when this node fenced itself.
			state = s.fenced
		}
		if err := a.host.Activate(ctx, actor, token, state); err != nil {
			return fmt.Errorf("activate %s: %w", actor, err)
		}
		s.active, s.token = true, token
		s.held, s.holdFor = nil, 0
		s.fenced, s.fencedToken = nil, 0
		a.logger.Debug("actor activated", "actor", actor, "token", token, "state_bytes", len(state))
	}
	return fn()
}

// handoff is the source's half of a migration: deactivate the actor running
// under oldToken (refusing that token from now on), park its final state
// for migration id (in case it aborts) and return the state to send. It is
// idempotent for the same migration. oldMigration is the migration that
// produced the placement under oldToken (0 for a fresh placement): state
// kept here for that migration is the actor's state if the placement was
// never activated; state kept for any other is another lineage's.
func (a *localActors) handoff(ctx context.Context, actor string, oldToken, oldMigration, id uint64) ([]byte, error) {
	if a.host == nil {
		return nil, ErrNoHost
	}
	s := a.slot(actor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holdFor == id && !s.active {
		return s.held, nil // a retried handoff
	}
	if s.active && s.token != oldToken {
		return nil, &placement.StaleTokenError{Current: s.token, Presented: oldToken}
	}
	if oldToken <= s.floor || id < s.holdFor {
		// A handoff for a placement this node already gave up (released,
		// or handed to a newer migration): a deposed leader's request
		// arriving late. It must not replace the newer migration's state.
		return nil, &placement.StaleTokenError{Current: s.floor + 1, Presented: oldToken}
	}
	var state []byte
	if s.active {
		st, err := a.host.Deactivate(ctx, actor)
		if err != nil {
			return nil, fmt.Errorf("deactivate %s for migration %d: %w", actor, id, err)
		}
		s.active, state = false, st
		a.logger.Info("actor deactivated for migration", "actor", actor, "token", oldToken, "migration", id)
	} else if s.fencedToken == oldToken {
		state = s.fenced // stopped by self-fencing under this placement
	} else if oldMigration != 0 && s.holdFor == oldMigration {
		// Parked by the migration whose abort put the actor back here, or
		// staged by the one whose commit brought it here, and never
		// activated since. State held for any other migration belongs to
		// an earlier lineage (e.g. this node was the source of a migration
		// that committed, and the actor came back later as a fresh
		// placement): it must not be resurrected.
		state = s.held
	} else if oldMigration != 0 && s.fencedToken != 0 {
		// The migration whose abort put the actor back here aborted before
		// its handoff reached this node, which had fenced itself meanwhile:
		// the actor never ran elsewhere and continues with its fenced state.
		// This is the state activating the placement would start with (see
		// run), so handing it over is the same as activating then
		// migrating. (A MigrationStorm run lost a counter here: 26 -> 1.)
		state = s.fenced
	}
	s.fenced, s.fencedToken = nil, 0
	s.floor = max(s.floor, oldToken)
	s.held, s.holdFor = state, id
	return state, nil
}

// stage is the target's half: keep the verified state for migration id.
func (a *localActors) stage(actor string, id uint64, state []byte) error {
	if a.host == nil {
		return ErrNoHost
	}
	s := a.slot(actor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active {
		return fmt.Errorf("%s is active here (token %d); cannot stage migration %d", actor, s.token, id)
	}
	if id < s.holdFor {
		// Migration IDs are Raft indexes: an older migration's transfer
		// arriving late (its leader was deposed) must not replace the state
		// a newer one staged or parked here.
		return fmt.Errorf("%w: migration %d is older than %d, whose state is kept here", ErrStaleToken, id, s.holdFor)
	}
	s.held, s.holdFor = state, id
	return nil
}

// deactivate stops actor if it runs under a token ≤ upTo, and never lets it
// activate again with such a token. It returns the final state.
func (a *localActors) deactivate(ctx context.Context, actor string, upTo uint64, why string) ([]byte, bool, error) {
	if a.host == nil {
		return nil, false, nil
	}
	s := a.slot(actor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if upTo > s.floor {
		s.floor = upTo
	}
	if !s.active || s.token > upTo {
		return nil, false, nil
	}
	state, err := a.host.Deactivate(ctx, actor)
	if err != nil {
		return nil, false, fmt.Errorf("deactivate %s: %w", actor, err)
	}
	s.active = false
	a.logger.Info("actor deactivated", "actor", actor, "token", s.token, "why", why)
	return state, true, nil
}

// deactivateAll stops every local actor (self-fencing, or closing). Each
// final state is kept for the same placement: if the lease is renewed before
// the actor goes elsewhere, it resumes with it; a migration hands it off.
// It returns how many were running.
func (a *localActors) deactivateAll(ctx context.Context, why string) int {
	return a.stopEach(ctx, "deactivated all actors", why,
		func(s *actorSlot) bool { return true },
		func(s *actorSlot, state []byte) { s.fenced, s.fencedToken = state, s.token })
}

// forgetBefore ends everything of a previous incarnation of this node, which
// rejoined by the commit at index joinedAt: every activation under a token
// below it is stopped for good and its state dropped, and states kept from
// self-fencing under such tokens are forgotten. The old incarnation's
// placements were all released, so none of that may continue: the actors
// start afresh or carry on elsewhere. Activations of the new incarnation
// (tokens from joinedAt on) are untouched, and so is state parked or staged
// for a migration, which is only ever used for the placement that very
// migration produces. It returns how many activations it stopped.
func (a *localActors) forgetBefore(ctx context.Context, joinedAt uint64, why string) int {
	return a.stopEach(ctx, "deactivated the previous incarnation's actors", why,
		func(s *actorSlot) bool {
			if s.fencedToken != 0 && s.fencedToken < joinedAt {
				s.fenced, s.fencedToken = nil, 0
			}
			return s.token < joinedAt
		},
		func(s *actorSlot, _ []byte) { s.floor = max(s.floor, s.token) })
}

// stopEach visits every slot under its lock: pick (which may also tidy the
// slot) says whether an active actor there is to stop; each stopped one is
// deactivated (a failure drops the activation anyway) and handed to stopped
// with its final state. It returns how many it stopped.
func (a *localActors) stopEach(ctx context.Context, msg, why string, pick func(*actorSlot) bool, stopped func(*actorSlot, []byte)) int {
	if a.host == nil {
		return 0
	}
	a.mu.Lock()
	slots := make(map[string]*actorSlot, len(a.slots))
	for k, v := range a.slots {
		slots[k] = v
	}
	a.mu.Unlock()
	n := 0
	for actor, s := range slots {
		s.mu.Lock()
		if pick(s) && s.active {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			state, err := a.host.Deactivate(dctx, actor)
			if err != nil {
				a.logger.Error("deactivate failed; dropping the activation anyway", "actor", actor, "why", why, "err", err)
			}
			cancel()
			s.active = false
			stopped(s, state)
			n++
		}
		s.mu.Unlock()
	}
	if n > 0 {
		a.logger.Info(msg, "count", n, "why", why)
	}
	return n
}
