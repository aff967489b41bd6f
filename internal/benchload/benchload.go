// Package benchload drives an operation at a fixed concurrency (closed loop)
// or a fixed arrival rate (open loop) for a fixed time and summarises what it
// measured. The placement benchmarks (library and HTTP) and the raw-Raft
// baseline use it, so every throughput figure of one run is measured the
// same way.
//
// A fixed duration, rather than testing.B's growing b.N, makes throughput at
// a given number of requests in flight well defined: every caller is busy
// for the whole window, and the warm-up is not counted.
package benchload

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelpie/cluster/internal/benchrec"
)

// Op is one operation; i numbers the operations of a run from 0.
type Op func(ctx context.Context, i int64) error

// Result is what one run measured, counting only operations that started
// inside the measured window (after the warm-up).
type Result struct {
	Ops     int           // operations completed without error in the window
	Errors  int           // operations that failed in the window
	Elapsed time.Duration // the measured window
	// LatenciesMs has one entry per completed operation, in milliseconds.
	// For an open loop it is counted from the operation's scheduled start,
	// so a backlog shows up as latency (no coordinated omission).
	LatenciesMs []float64
	FirstErr    error
}

// PerSecond is Ops over the window.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// P returns the p-th latency percentile in milliseconds.
func (r Result) P(p float64) float64 { return benchrec.Percentile(r.LatenciesMs, p) }

// recorder collects per-operation outcomes from many goroutines.
type recorder struct {
	mu    sync.Mutex
	res   Result
	start time.Time // window start
	end   time.Time // window end
}

func (c *recorder) record(started time.Time, lat time.Duration, err error) {
	if started.Before(c.start) || !started.Before(c.end) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.res.Errors++
		if c.res.FirstErr == nil {
			c.res.FirstErr = err
		}
		return
	}
	c.res.Ops++
	c.res.LatenciesMs = append(c.res.LatenciesMs, float64(lat)/float64(time.Millisecond))
}

// Closed runs op from inflight goroutines, each starting its next operation
// when the previous one ends, for warmup+window, and measures the window.
// Operations still running at the end are waited for (and not counted if
// they started after the window closed). ctx cancels early.
func Closed(ctx context.Context, inflight int, warmup, window time.Duration, op Op) Result {
	now := time.Now()
	rec := &recorder{start: now.Add(warmup), end: now.Add(warmup + window)}
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < inflight; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(rec.end) {
					return
				}
				err := op(ctx, next.Add(1)-1)
				rec.record(t0, time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	rec.res.Elapsed = rec.end.Sub(rec.start)
	return rec.res
}

// ErrBacklog is Result.FirstErr of an open loop that had to skip arrivals
// because maxOutstanding operations were already running.
var ErrBacklog = errors.New("benchload: too many operations outstanding; arrivals skipped")

// Open starts op at a steady rate (operations per second) for warmup+window,
// each in its own goroutine, and measures the window: latency counts from
// the scheduled start. At most maxOutstanding run at once; an arrival beyond
// that is counted as an error (ErrBacklog) rather than silently delayed.
func Open(ctx context.Context, rate float64, maxOutstanding int, warmup, window time.Duration, op Op) Result {
	now := time.Now()
	rec := &recorder{start: now.Add(warmup), end: now.Add(warmup + window)}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxOutstanding)
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var i int64
	for ctx.Err() == nil {
		t := time.Now()
		if !t.Before(rec.end) {
			break
		}
		// Start every arrival scheduled up to now.
		for ; ; i++ {
			due := now.Add(time.Duration(i) * interval)
			if due.After(t) {
				break
			}
			select {
			case sem <- struct{}{}:
			default:
				rec.record(due, 0, ErrBacklog)
				continue
			}
			wg.Add(1)
			go func(i int64, due time.Time) {
				defer wg.Done()
				defer func() { <-sem }()
				err := op(ctx, i)
				rec.record(due, time.Since(due), err)
			}(i, due)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	rec.res.Elapsed = rec.end.Sub(rec.start)
	return rec.res
}
