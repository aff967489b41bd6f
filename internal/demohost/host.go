package demohost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kelpie/cluster/placement"
)

// ErrNotActive: the actor is not active on this host.
var ErrNotActive = errors.New("demohost: actor not active here")

// ErrBadRequest: the invoke body is not a known operation. It reports
// BadRequest() true, so the node answers HTTP 400.
var ErrBadRequest error = badRequest{}

type badRequest struct{}

func (badRequest) Error() string    { return "demohost: bad request" }
func (badRequest) BadRequest() bool { return true }

// Request is an invoke body: {"op":"incr"} or {"op":"get"}; incr adds By
// (default 1).
type Request struct {
	Op string `json:"op"`
	By int64  `json:"by,omitempty"`
}

// Response is an invoke answer.
type Response struct {
	Value int64  `json:"value"`
	Token uint64 `json:"token"`
	Node  string `json:"node"`
}

// Event is one line of the activation log.
type Event struct {
	Kind  string `json:"kind"` // "activate" or "deactivate"
	Actor string `json:"actor"`
	Node  string `json:"node"`
	Token uint64 `json:"token"`
	Mono  int64  `json:"mono_ns"` // CLOCK_MONOTONIC, nanoseconds
	Value int64  `json:"value"`   // counter value at the event
}

// Interval is one activation of one actor on one node.
type Interval struct {
	Actor string `json:"actor"`
	Node  string `json:"node"`
	Token uint64 `json:"token"`
	Start int64  `json:"start_mono_ns"`
	End   int64  `json:"end_mono_ns"` // 0 while still active
}

// Host is the demo host. Create with New.
type Host struct {
	node string

	mu      sync.Mutex
	actors  map[string]*counter
	log     []Event
	logFile *os.File
}

type counter struct {
	token uint64
	value int64
}

// New returns a host for node. If logPath is not empty, every event is also
// appended to it as a JSON line (the file survives a crash of the process).
func New(node, logPath string) (*Host, error) {
	h := &Host{node: node, actors: map[string]*counter{}}
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("demohost: activation log: %w", err)
		}
		h.logFile = f
	}
	return h, nil
}

// Close closes the log file.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.logFile == nil {
		return nil
	}
	err := h.logFile.Close()
	h.logFile = nil
	return err
}

// Mono reads CLOCK_MONOTONIC in nanoseconds.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux with a valid clock id
	}
	return ts.Nano()
}

func (h *Host) record(kind, actor string, token uint64, value int64) {
	e := Event{Kind: kind, Actor: actor, Node: h.node, Token: token, Mono: Mono(), Value: value}
	h.log = append(h.log, e)
	if h.logFile != nil {
		b, _ := json.Marshal(e)
		b = append(b, '\n')
		_, _ = h.logFile.Write(b)
	}
}

// Activate implements cluster.Host: state is the JSON {"value":n} handed
// over by a migration, or empty for a fresh actor.
func (h *Host) Activate(_ context.Context, actor string, token uint64, state []byte) error {
	var v struct {
		Value int64 `json:"value"`
	}
	if len(state) > 0 {
		if err := json.Unmarshal(state, &v); err != nil {
			return fmt.Errorf("demohost: bad state for %s: %w", actor, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.actors[actor]; ok {
		return fmt.Errorf("demohost: %s already active with token %d", actor, c.token)
	}
	h.actors[actor] = &counter{token: token, value: v.Value}
	h.record("activate", actor, token, v.Value)
	return nil
}

// Deactivate implements cluster.Host and returns {"value":n}.
func (h *Host) Deactivate(_ context.Context, actor string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.actors[actor]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotActive, actor)
	}
	delete(h.actors, actor)
	h.record("deactivate", actor, c.token, c.value)
	return json.Marshal(map[string]int64{"value": c.value})
}

// Invoke implements cluster.Invoker.
func (h *Host) Invoke(_ context.Context, actor string, token uint64, req []byte) ([]byte, error) {
	var r Request
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.actors[actor]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotActive, actor)
	}
	if err := placement.CheckFence(c.token, token); err != nil {
		return nil, err
	}
	switch r.Op {
	case "incr":
		by := r.By
		if by == 0 {
			by = 1
		}
		c.value += by
	case "get":
	default:
		return nil, fmt.Errorf("%w: op %q (want incr or get)", ErrBadRequest, r.Op)
	}
	return json.Marshal(Response{Value: c.value, Token: c.token, Node: h.node})
}

// Events returns a copy of the activation log.
func (h *Host) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.log...)
}

// Active lists the actors active here, sorted.
func (h *Host) Active() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.actors))
	for a := range h.actors {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Intervals turns events (from any number of hosts) into activation
// intervals; an activation without a deactivation is open (End 0).
func Intervals(events []Event) []Interval {
	type key struct{ actor, node string }
	open := map[key]*Interval{}
	var out []Interval
	sorted := append([]Event(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Mono < sorted[j].Mono })
	for _, e := range sorted {
		k := key{e.Actor, e.Node}
		switch e.Kind {
		case "activate":
			open[k] = &Interval{Actor: e.Actor, Node: e.Node, Token: e.Token, Start: e.Mono}
		case "deactivate":
			if iv, ok := open[k]; ok {
				iv.End = e.Mono
				out = append(out, *iv)
				delete(open, k)
			}
		}
	}
	for _, iv := range open {
		out = append(out, *iv)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Actor != out[j].Actor {
			return out[i].Actor < out[j].Actor
		}
		return out[i].Start < out[j].Start
	})
	return out
}

// Overlaps returns pairs of intervals of the same actor on different nodes
// that overlap in time (SingleActivation violations). An open interval
// counts as lasting until now.
func Overlaps(ivs []Interval, now int64) [][2]Interval {
	var out [][2]Interval
	end := func(iv Interval) int64 {
		if iv.End == 0 {
			return now
		}
		return iv.End
	}
	for i := range ivs {
		for j := i + 1; j < len(ivs) && ivs[j].Actor == ivs[i].Actor; j++ {
			if ivs[j].Start < end(ivs[i]) {
				out = append(out, [2]Interval{ivs[i], ivs[j]})
			}
		}
	}
	return out
}
