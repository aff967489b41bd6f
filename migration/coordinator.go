package migration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

var (
	// ErrInProgress: the actor already has a migration running here.
	ErrInProgress = errors.New("migration: already in progress for this actor")
	// ErrCooldown: the actor migrated too recently.
	ErrCooldown = errors.New("migration: actor is cooling down after its last migration")
)

// Record identifies one migration (its FSM record).
type Record struct {
	ID       uint64 `json:"id"` // Raft index of MigrationStarted
	Actor    string `json:"actor"`
	From     string `json:"from"`
	To       string `json:"to"`
	OldToken uint64 `json:"old_token"`
	// OldMigration: the migration that produced the placement being
	// migrated (0: a fresh placement).
	OldMigration uint64 `json:"old_migration,omitempty"`
}

// Receipt is what a completed handoff reports.
type Receipt struct {
	Checksum string `json:"checksum"`
	Bytes    int64  `json:"bytes"`
}

// Outcome is how a migration ended.
type Outcome struct {
	Record
	State    string        `json:"state"` // committed or aborted
	NewToken uint64        `json:"new_token,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
}

// Log commits the phases through Raft.
type Log interface {
	// Start commits MigrationStarted for actor to target.
	Start(ctx context.Context, actor, to string) (Record, error)
	// Commit commits MigrationCommitted and returns the new token.
	Commit(ctx context.Context, r Record, rc Receipt) (uint64, error)
	// Abort commits MigrationAborted and returns the token the actor has on
	// its source again (0 if it became re-placeable).
	Abort(ctx context.Context, r Record, reason string) (uint64, error)
}

// Mover does the node-to-node work.
type Mover interface {
	// Handoff makes the source deactivate the actor and send its final state
	// to the target, which verifies and stages it.
	Handoff(ctx context.Context, r Record) (Receipt, error)
	// Activate asks node to activate the actor under token now (best effort:
	// the first request for the actor would activate it anyway).
	Activate(ctx context.Context, node, actor string, token uint64) error
}

// Hooks let fault-injection tests act between phases. Nil hooks do nothing.
type Hooks struct {
	AfterStart   func(Record)
	AfterHandoff func(Record)
	AfterCommit  func(Record)
}

// Config tunes the coordinator.
type Config struct {
	// PhaseTimeout bounds the transfer phase. Default 30s (a 64 MiB state
	// on a slow link).
	PhaseTimeout time.Duration
	// Cooldown: an actor may not migrate again this soon after its last
	// migration ended. Default 5s, which stops drain/rebalance ping-pong.
	Cooldown time.Duration
	Hooks    Hooks
	Logger   *slog.Logger
	Now      func() time.Time
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{PhaseTimeout: 30 * time.Second, Cooldown: 5 * time.Second}
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	if c.PhaseTimeout <= 0 || c.Cooldown < 0 {
		return fmt.Errorf("migration: need PhaseTimeout > 0 and Cooldown ≥ 0")
	}
	return nil
}

// Coordinator drives migrations. Create with New.
type Coordinator struct {
	cfg   Config
	log   Log
	mover Mover

	mu      sync.Mutex
	running map[string]bool
	lastEnd map[string]time.Time
}

// New returns a coordinator.
func New(cfg Config, log Log, mover Mover) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{cfg: cfg, log: log, mover: mover, running: map[string]bool{}, lastEnd: map[string]time.Time{}}, nil
}

func (c *Coordinator) claim(actor string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[actor] {
		return fmt.Errorf("%w: %s", ErrInProgress, actor)
	}
	if end, ok := c.lastEnd[actor]; ok && c.cfg.Now().Sub(end) < c.cfg.Cooldown {
		return fmt.Errorf("%w: %s (%s left)", ErrCooldown, actor, (c.cfg.Cooldown - c.cfg.Now().Sub(end)).Round(time.Millisecond))
	}
	c.running[actor] = true
	return nil
}

// claimToEnd claims actor for ending its migration: like claim, but
// without the cooldown. It reports false if the actor is claimed already.
func (c *Coordinator) claimToEnd(actor string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[actor] {
		return false
	}
	c.running[actor] = true
	return true
}

func (c *Coordinator) release(actor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.running, actor)
	c.lastEnd[actor] = c.cfg.Now()
	// Forget cooldowns long past so the map does not grow without bound.
	if len(c.lastEnd) > 100_000 {
		for a, t := range c.lastEnd {
			if c.cfg.Now().Sub(t) > c.cfg.Cooldown {
				delete(c.lastEnd, a)
			}
		}
	}
}

// Migrate moves actor to node to. It returns the outcome once the migration
// is committed or aborted. An error with a non-zero Outcome.ID means the
// migration started but its end could not be committed (no quorum): the
// record stays in the FSM, and the leader (this one once the call has
// returned, or the next) ends it with Resume.
func (c *Coordinator) Migrate(ctx context.Context, actor, to string) (Outcome, error) {
	if err := c.claim(actor); err != nil {
		return Outcome{}, err
	}
	start := c.cfg.Now()
	var out Outcome
	defer func() {
		if out.ID != 0 {
			c.release(actor)
		} else {
			c.mu.Lock()
			delete(c.running, actor)
			c.mu.Unlock()
		}
	}()
	r, err := c.log.Start(ctx, actor, to)
	if err != nil {
		return Outcome{}, err
	}
	out.Record = r
	// Once started, the migration runs to its end even if the caller goes
	// away: abandoning it would leave the actor Migrating until a leader
	// change. Every phase is bounded by PhaseTimeout instead.
	ctx = context.WithoutCancel(ctx)
	c.hook(c.cfg.Hooks.AfterStart, r)

	pctx, cancel := context.WithTimeout(ctx, c.cfg.PhaseTimeout)
	rc, err := c.mover.Handoff(pctx, r)
	cancel()
	if err != nil {
		return c.abort(ctx, out, start, "handoff: "+err.Error())
	}
	out.Bytes = rc.Bytes
	c.hook(c.cfg.Hooks.AfterHandoff, r)

	tok, err := c.log.Commit(ctx, r, rc)
	if err != nil {
		if isDefinite(err) {
			return c.abort(ctx, out, start, "commit refused: "+err.Error())
		}
		return out, fmt.Errorf("migration %d of %s: commit outcome unknown (the leader ends it if it is still running): %w", r.ID, actor, err)
	}
	out.State, out.NewToken, out.Duration = "committed", tok, c.cfg.Now().Sub(start)
	c.hook(c.cfg.Hooks.AfterCommit, r)
	actx, cancel := context.WithTimeout(ctx, c.cfg.PhaseTimeout)
	if err := c.mover.Activate(actx, r.To, actor, tok); err != nil {
		c.cfg.Logger.Warn("eager activation on target failed; first use will activate it", "actor", actor, "node", r.To, "err", err)
	}
	cancel()
	c.cfg.Logger.Info("migration committed", "actor", actor, "from", r.From, "to", r.To, "token", tok, "bytes", rc.Bytes, "took", out.Duration)
	return out, nil
}

// definiteError is implemented by errors that mean the FSM refused the
// command (so nothing was committed and an abort is safe and needed).
type definiteError interface{ Definite() bool }

func isDefinite(err error) bool {
	var d definiteError
	return errors.As(err, &d) && d.Definite()
}

func (c *Coordinator) abort(ctx context.Context, out Outcome, start time.Time, reason string) (Outcome, error) {
	r := out.Record
	tok, err := c.log.Abort(ctx, r, reason)
	if err != nil {
		return out, fmt.Errorf("migration %d of %s failed (%s) and its abort could not be committed (the leader ends it if it is still running): %w", r.ID, r.Actor, reason, err)
	}
	out.State, out.NewToken, out.Reason, out.Duration = "aborted", tok, reason, c.cfg.Now().Sub(start)
	if tok != 0 {
		actx, cancel := context.WithTimeout(ctx, c.cfg.PhaseTimeout)
		if err := c.mover.Activate(actx, r.From, r.Actor, tok); err != nil {
			c.cfg.Logger.Warn("reactivation on source failed; first use will activate it", "actor", r.Actor, "node", r.From, "err", err)
		}
		cancel()
	}
	c.cfg.Logger.Warn("migration aborted", "actor", r.Actor, "from", r.From, "to", r.To, "reason", reason, "token", tok)
	return out, nil
}

// Resume ends migrations that nobody here is driving — left running by a
// previous leader, or by a Migrate call of this node that gave up (its
// commit failed while leadership was elsewhere): each is aborted (the actor
// goes back to its source, which still holds the state it parked). A
// migration this coordinator is driving is skipped; the caller retries
// Resume later for it. The cooldown does not apply: it limits how often an
// actor starts migrating, not ending one. It returns the outcomes.
func (c *Coordinator) Resume(ctx context.Context, records []Record) []Outcome {
	var outs []Outcome
	for _, r := range records {
		if !c.claimToEnd(r.Actor) {
			continue // being driven here
		}
		o, err := c.abort(ctx, Outcome{Record: r}, c.cfg.Now(), "leader changed during migration")
		c.release(r.Actor)
		if err != nil {
			c.cfg.Logger.Warn("resume: abort failed", "actor", r.Actor, "err", err)
			continue
		}
		outs = append(outs, o)
	}
	return outs
}

func (c *Coordinator) hook(f func(Record), r Record) {
	if f != nil {
		f(r)
	}
}
