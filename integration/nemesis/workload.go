package nemesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sync"
	"syscall"
	"time"

	cluster "github.com/kelpie/cluster"
)

// Mix weighs the operation kinds of the workload.
type Mix struct {
	Incr, Get, Lookup, Place, Migrate int
}

// DefaultMix is mostly counter traffic with some placements, lookups and
// migrations.
var DefaultMix = Mix{Incr: 40, Get: 20, Lookup: 15, Place: 15, Migrate: 10}

// Workload is a set of concurrent clients. Each picks an operation by Mix,
// an actor, and a node uniformly at random (down nodes included), runs it
// with a deadline and records it with its invoke and complete times.
type Workload struct {
	Workers  int
	Counters int // counter actors ctr-0 … ctr-(Counters-1)
	Mix      Mix
	// Think is the pause range between two operations of a worker.
	ThinkMin, ThinkMax time.Duration
	// Deadlines: invoke (incr/get), place and lookup, migrate. A deadline
	// that passes makes the outcome unknown.
	InvokeTimeout, CallTimeout, MigrateTimeout time.Duration
	Seed                                       int64

	c      *Cluster
	rec    *Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewWorkload returns a workload with the defaults.
func NewWorkload(c *Cluster, rec *Recorder, seed int64) *Workload {
	return &Workload{
		Workers: 4, Counters: 8, Mix: DefaultMix,
		ThinkMin: 30 * time.Millisecond, ThinkMax: 120 * time.Millisecond,
		InvokeTimeout: 5 * time.Second, CallTimeout: 5 * time.Second, MigrateTimeout: 20 * time.Second,
		Seed: seed, c: c, rec: rec,
	}
}

// CounterActor is the name of counter i.
func CounterActor(i int) string { return fmt.Sprintf("ctr-%d", i) }

// Start starts the workers.
func (w *Workload) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for i := 0; i < w.Workers; i++ {
		r := rand.New(rand.NewSource(w.Seed*1000 + int64(i)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.worker(ctx, i, r)
		}()
	}
}

// Stop stops the workers and waits for their last operations (bounded by
// their deadlines).
func (w *Workload) Stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}

func (w *Workload) pick(r *rand.Rand) string {
	m := w.Mix
	total := m.Incr + m.Get + m.Lookup + m.Place + m.Migrate
	x := r.Intn(total)
	for _, k := range []struct {
		kind string
		w    int
	}{{OpIncr, m.Incr}, {OpGet, m.Get}, {OpLookup, m.Lookup}, {OpPlace, m.Place}, {OpMigrate, m.Migrate}} {
		if x < k.w {
			return k.kind
		}
		x -= k.w
	}
	return OpGet
}

func (w *Workload) worker(ctx context.Context, id int, r *rand.Rand) {
	names := w.c.Names()
	fresh := 0
	for {
		think := w.ThinkMin
		if w.ThinkMax > w.ThinkMin {
			think += time.Duration(r.Int63n(int64(w.ThinkMax - w.ThinkMin)))
		}
		if !sleepCtx(ctx, think) {
			return
		}
		kind := w.pick(r)
		node := names[r.Intn(len(names))]
		actor := CounterActor(r.Intn(w.Counters))
		var target string
		switch kind {
		case OpPlace:
			// Mostly actors nobody placed yet (a commit), sometimes a
			// counter (answered as existing).
			if r.Intn(10) < 7 {
				fresh++
				actor = fmt.Sprintf("plc-%d-%d", id, fresh)
			}
		case OpMigrate:
			target = names[r.Intn(len(names))]
		}
		consistent := r.Intn(2) == 0
		w.Do(id, kind, actor, node, target, consistent)
	}
}

// Do runs one operation with the workload's deadline for its kind and
// records it. Stopping the workload lets in-flight operations finish.
func (w *Workload) Do(process int, kind, actor, node, target string, consistent bool) Op {
	timeout := w.CallTimeout
	switch kind {
	case OpIncr, OpGet:
		timeout = w.InvokeTimeout
	case OpMigrate:
		timeout = w.MigrateTimeout
	}
	return w.DoWithin(timeout, process, kind, actor, node, target, consistent)
}

// DoWithin runs one operation with the given deadline and records it.
func (w *Workload) DoWithin(timeout time.Duration, process int, kind, actor, node, target string, consistent bool) Op {
	o := Op{ID: w.rec.NextOpID(), Process: process, Kind: kind, Actor: actor, Node: node, Target: target}
	cl := w.c.Client(node)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	o.Invoke = Mono()
	switch kind {
	case OpIncr, OpGet:
		var res cluster.InvokeResult
		res, err = cl.Invoke(ctx, actor, json.RawMessage(fmt.Sprintf(`{"op":%q}`, kind)))
		o.Complete = Mono()
		if err == nil {
			var body struct {
				Value int64  `json:"value"`
				Token uint64 `json:"token"`
				Node  string `json:"node"`
			}
			if uerr := json.Unmarshal(res.Body, &body); uerr != nil {
				err = fmt.Errorf("decoding the answer %s: %w", res.Body, uerr)
			} else {
				o.Value, o.Token, o.Owner = body.Value, res.Token, res.Node
				if body.Token != res.Token || body.Node != res.Node {
					o.Error = fmt.Sprintf("answer disagrees with its envelope: body token %d node %s", body.Token, body.Node)
				}
			}
		}
	case OpPlace:
		var res cluster.PlaceResult
		res, err = cl.Place(ctx, actor, cluster.PlaceOptions{})
		o.Complete = Mono()
		if err == nil {
			o.Token, o.Owner, o.Existing = res.Placement.Token, res.Placement.Node, res.Existing
		}
	case OpLookup:
		var res cluster.LookupResult
		res, err = cl.Lookup(ctx, actor, consistent, 0)
		o.Complete = Mono()
		o.Consistent = consistent
		if err == nil {
			o.Found = res.Found
			if res.Found {
				o.Token, o.Owner = res.Placement.Token, res.Placement.Node
			}
		}
	case OpMigrate:
		var out cluster.MigrationOutcome
		out, err = cl.Migrate(ctx, actor, target)
		o.Complete = Mono()
		if err == nil {
			o.MigState, o.MigID, o.OldToken, o.From, o.Token = out.State, out.ID, out.OldToken, out.From, out.NewToken
		}
	}
	if err == nil {
		o.Result = ResultOK
	} else {
		o.Result, o.Code = classify(kind, err)
		o.Error = err.Error()
	}
	w.rec.Op(o)
	return o
}

// definite lists API error codes that mean the operation did not happen.
var definite = map[string]bool{
	"not_leader": true, "not_ready": true, "unknown_node": true, "not_member": true,
	"invalid_argument": true, "not_server": true, "stale_token": true, "not_owner": true,
	"migrating": true, "not_placed": true, "fenced": true, "lease_pending": true,
	"no_capacity": true, "no_eligible_node": true, "no_host": true, "owner_unreachable": true,
	"not_found": true, "illegal_transition": true,
}

// classify turns an error into fail (surely not done) or unknown.
func classify(kind string, err error) (result, code string) {
	var ae *cluster.APIError
	if errors.As(err, &ae) {
		code = ae.Body.Code
		switch {
		case code == "no_quorum" && (kind == OpIncr || kind == OpGet || kind == OpLookup):
			// Invoke retries until it can run; a no_quorum answer means
			// it never ran. Lookups do not write.
			return ResultFail, code
		case definite[code]:
			return ResultFail, code
		}
		// no_quorum on a write (the old leader may still commit what it
		// replicated), unknown_outcome, timeout, internal, closed, ...
		return ResultUnknown, code
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) {
		return ResultFail, "dial"
	}
	return ResultUnknown, "transport"
}
