package nemesis

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/kelpie/cluster/internal/demohost"
)

// Mono reads CLOCK_MONOTONIC in nanoseconds: the clock of every timestamp in
// a history, and of the demo host's activation log.
func Mono() int64 { return demohost.Mono() }

// Operation kinds of the workload.
const (
	OpIncr    = "incr"
	OpGet     = "get"
	OpPlace   = "place"
	OpLookup  = "lookup"
	OpMigrate = "migrate"
)

// FinalProcess is the Process of the final reads made after healing.
const FinalProcess = -1

// Operation results.
const (
	ResultOK      = "ok"      // it happened, with the recorded output
	ResultFail    = "fail"    // it surely did not happen
	ResultUnknown = "unknown" // it may or may not have happened
)

// Op is one client operation, with its invoke and complete times.
type Op struct {
	ID       int64  `json:"id"`
	Process  int    `json:"process"` // workload worker; -1 for the final reads
	Kind     string `json:"kind"`
	Actor    string `json:"actor"`
	Node     string `json:"node"`             // the node the request was sent to
	Target   string `json:"target,omitempty"` // migrate: the requested target
	Invoke   int64  `json:"invoke_ns"`
	Complete int64  `json:"complete_ns"`
	Result   string `json:"result"`
	Code     string `json:"code,omitempty"` // API error code
	Error    string `json:"error,omitempty"`

	// Outputs (when Result is ok).
	Value      int64  `json:"value,omitempty"`      // incr/get: counter value
	Token      uint64 `json:"token,omitempty"`      // incr/get: token it ran under; place/lookup: placement token; migrate: new token
	Owner      string `json:"owner,omitempty"`      // incr/get: node that ran it; place/lookup: placement node
	Existing   bool   `json:"existing,omitempty"`   // place: the actor was already placed (no commit)
	Found      bool   `json:"found,omitempty"`      // lookup
	Consistent bool   `json:"consistent,omitempty"` // lookup: ?consistent=true
	MigState   string `json:"mig_state,omitempty"`  // migrate: committed or aborted
	MigID      uint64 `json:"mig_id,omitempty"`
	OldToken   uint64 `json:"old_token,omitempty"` // migrate
	From       string `json:"from,omitempty"`      // migrate
}

// Commits reports whether an ok op surely made a Raft commit.
func (o Op) Commits() bool {
	if o.Result != ResultOK {
		return false
	}
	switch o.Kind {
	case OpPlace:
		return !o.Existing
	case OpMigrate:
		return o.MigID != 0
	}
	return false
}

func (o Op) String() string {
	s := fmt.Sprintf("op#%d p%d %s %s via %s [%d..%d] %s", o.ID, o.Process, o.Kind, o.Actor, o.Node, o.Invoke, o.Complete, o.Result)
	if o.Result != ResultOK {
		if o.Code != "" {
			s += " code=" + o.Code
		}
		if o.Error != "" {
			e := o.Error
			if len(e) > 160 {
				e = e[:160] + "…"
			}
			s += " err=" + e
		}
		return s
	}
	switch o.Kind {
	case OpIncr, OpGet:
		s += fmt.Sprintf(" value=%d token=%d owner=%s", o.Value, o.Token, o.Owner)
	case OpPlace:
		s += fmt.Sprintf(" token=%d owner=%s existing=%v", o.Token, o.Owner, o.Existing)
	case OpLookup:
		s += fmt.Sprintf(" found=%v token=%d owner=%s consistent=%v", o.Found, o.Token, o.Owner, o.Consistent)
	case OpMigrate:
		s += fmt.Sprintf(" %s id=%d %s→%s token %d→%d", o.MigState, o.MigID, o.From, o.Target, o.OldToken, o.Token)
	}
	return s
}

// Nemesis event kinds.
const (
	EvStart      = "start"       // a node's process started
	EvKill       = "kill"        // kill -9; Time is when the process was surely gone
	EvStop       = "stop"        // SIGSTOP; Time is when the process was surely stopped
	EvCont       = "cont"        // SIGCONT; Time is just before the signal
	EvLeaveBegin = "leave-begin" // SIGTERM sent (graceful leave)
	EvExit       = "exit"        // the process exited after a graceful leave
	EvNet        = "net"         // the network rules changed to Net
	EvNote       = "note"        // free-form (schedule steps, phases)
)

// NetState is the set of network faults in force: directed cuts between
// nodes (by name) and random loss on every link between nodes.
type NetState struct {
	Cuts    [][2]string `json:"cuts,omitempty"` // {from, to}: packets from → to are dropped
	LossPct int         `json:"loss_pct,omitempty"`
}

// Empty reports whether nothing is cut and nothing lost.
func (s NetState) Empty() bool { return len(s.Cuts) == 0 && s.LossPct == 0 }

// Cut reports whether packets from → to are dropped.
func (s NetState) Cut(from, to string) bool {
	for _, c := range s.Cuts {
		if c[0] == from && c[1] == to {
			return true
		}
	}
	return false
}

// Involves reports whether node is an end of a cut, or loss is on.
func (s NetState) Involves(node string) bool {
	if s.LossPct > 0 {
		return true
	}
	for _, c := range s.Cuts {
		if c[0] == node || c[1] == node {
			return true
		}
	}
	return false
}

func (s NetState) String() string {
	if s.Empty() {
		return "healed"
	}
	out := ""
	if len(s.Cuts) > 0 {
		out = fmt.Sprintf("cuts %v", s.Cuts)
	}
	if s.LossPct > 0 {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%d%% loss", s.LossPct)
	}
	return out
}

// NemesisEvent is one fault (or lifecycle step) applied to the cluster.
type NemesisEvent struct {
	Time   int64     `json:"time_ns"`
	Kind   string    `json:"kind"`
	Node   string    `json:"node,omitempty"`
	Net    *NetState `json:"net,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

func (e NemesisEvent) String() string {
	s := fmt.Sprintf("@%d %s", e.Time, e.Kind)
	if e.Node != "" {
		s += " " + e.Node
	}
	if e.Net != nil {
		s += " " + e.Net.String()
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// StatusObs is one GET /v1/status answer.
type StatusObs struct {
	Node       string   `json:"node"`
	Sent       int64    `json:"sent_ns"`
	Time       int64    `json:"time_ns"` // answer received
	Term       uint64   `json:"term"`
	IsLeader   bool     `json:"is_leader"`
	Leader     string   `json:"leader,omitempty"`
	Epoch      uint64   `json:"epoch"`
	ViewIndex  uint64   `json:"view_index"`
	Ready      bool     `json:"ready"`
	SelfStatus string   `json:"self_status"`
	Role       string   `json:"role"`
	Voters     []string `json:"voters,omitempty"`
}

// MemberBrief is the part of a view member the checkers use.
type MemberBrief struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Incarnation uint64 `json:"incarnation"`
}

// ViewObs is one committed view as a node served it.
type ViewObs struct {
	Node    string        `json:"node"`
	Sent    int64         `json:"sent_ns,omitempty"`
	Time    int64         `json:"time_ns"` // answer received
	Epoch   uint64        `json:"epoch"`
	Index   uint64        `json:"index"`
	Members []MemberBrief `json:"members"`
}

// Member returns id's record.
func (v ViewObs) Member(id string) (MemberBrief, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return MemberBrief{}, false
}

// PlacementBrief is a committed placement.
type PlacementBrief struct {
	Actor       string `json:"actor"`
	Node        string `json:"node"`
	Token       uint64 `json:"token"`
	State       string `json:"state"`
	Incarnation uint64 `json:"incarnation"`
	Migration   uint64 `json:"migration,omitempty"`
}

// Snapshot is a node's placement table read between two reads of the same
// view (so the placements are those of that view).
type Snapshot struct {
	Node       string           `json:"node"`
	Time       int64            `json:"time_ns"`
	View       ViewObs          `json:"view"`
	Index      uint64           `json:"index"`
	Placements []PlacementBrief `json:"placements"`
}

// Activation is one line of a node's activation log.
type Activation = demohost.Event

// MigrationRec is a migration record as a server listed it at the end.
type MigrationRec struct {
	Server   string `json:"server"`
	ID       uint64 `json:"id"`
	Actor    string `json:"actor"`
	From     string `json:"from"`
	To       string `json:"to"`
	OldToken uint64 `json:"old_token"`
	NewToken uint64 `json:"new_token,omitempty"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	// StartedAt and EndedAt are the proposers' wall clocks (unix ns).
	StartedAt int64 `json:"started_at,omitempty"`
	EndedAt   int64 `json:"ended_at,omitempty"`
}

// Final is the state after healing and settling.
type Final struct {
	HealedAt    int64                       `json:"healed_ns"`
	ConvergedAt int64                       `json:"converged_ns"` // 0: never
	Converged   bool                        `json:"converged"`
	Detail      string                      `json:"detail,omitempty"`
	Leader      string                      `json:"leader"`
	View        ViewObs                     `json:"view"`                 // the leader's
	Placements  map[string][]PlacementBrief `json:"placements,omitempty"` // by server
	Live        []string                    `json:"live"`                 // nodes running at the end
	End         int64                       `json:"end_ns"`               // when the processes were stopped
}

// Meta describes the run.
type Meta struct {
	Scenario string     `json:"scenario"`
	Seed     int64      `json:"seed"`
	Nodes    []NodeInfo `json:"nodes"`
	LeaseNs  int64      `json:"lease_ns"`
	Schedule []string   `json:"schedule,omitempty"`
	Start    int64      `json:"start_ns"`
	// WallStart is the wall clock (unix ns) read together with Start, to
	// place the proposers' wall-clock stamps (migration records) on the
	// monotonic time line: same machine, same clock.
	WallStart int64 `json:"wall_start_ns,omitempty"`
}

// MonoOfWall converts a wall-clock stamp (unix ns) taken on this machine to
// CLOCK_MONOTONIC (0 if the run did not record the mapping).
func (m Meta) MonoOfWall(wall int64) int64 {
	if m.WallStart == 0 || wall == 0 {
		return 0
	}
	return wall - m.WallStart + m.Start
}

// NodeInfo is one node of the cluster.
type NodeInfo struct {
	Name   string `json:"name"`
	IP     string `json:"ip"`
	Server bool   `json:"server"`
}

// record is one JSON line of the history file.
type record struct {
	Type       string        `json:"type"`
	Meta       *Meta         `json:"meta,omitempty"`
	Op         *Op           `json:"op,omitempty"`
	Nemesis    *NemesisEvent `json:"nemesis,omitempty"`
	Status     *StatusObs    `json:"status,omitempty"`
	View       *ViewObs      `json:"view,omitempty"`
	Snapshot   *Snapshot     `json:"snapshot,omitempty"`
	Activation *Activation   `json:"activation,omitempty"`
	Migration  *MigrationRec `json:"migration,omitempty"`
	Final      *Final        `json:"final,omitempty"`
}

// History is everything recorded in a run. Checkers read it; nothing
// mutates it once the run is over.
type History struct {
	Meta        Meta
	Ops         []Op
	Nemesis     []NemesisEvent
	Statuses    []StatusObs
	Views       []ViewObs
	Snapshots   []Snapshot
	Activations []Activation
	Migrations  []MigrationRec
	Final       *Final
}

func (h *History) add(r record) {
	switch {
	case r.Meta != nil:
		h.Meta = *r.Meta
	case r.Op != nil:
		h.Ops = append(h.Ops, *r.Op)
	case r.Nemesis != nil:
		h.Nemesis = append(h.Nemesis, *r.Nemesis)
	case r.Status != nil:
		h.Statuses = append(h.Statuses, *r.Status)
	case r.View != nil:
		h.Views = append(h.Views, *r.View)
	case r.Snapshot != nil:
		h.Snapshots = append(h.Snapshots, *r.Snapshot)
	case r.Activation != nil:
		h.Activations = append(h.Activations, *r.Activation)
	case r.Migration != nil:
		h.Migrations = append(h.Migrations, *r.Migration)
	case r.Final != nil:
		f := *r.Final
		h.Final = &f
	}
}

// Servers lists the server nodes of the run.
func (h *History) Servers() []string {
	var out []string
	for _, n := range h.Meta.Nodes {
		if n.Server {
			out = append(out, n.Name)
		}
	}
	return out
}

// OpByID returns the op with id.
func (h *History) OpByID(id int64) (Op, bool) {
	i := sort.Search(len(h.Ops), func(i int) bool { return h.Ops[i].ID >= id })
	if i < len(h.Ops) && h.Ops[i].ID == id {
		return h.Ops[i], true
	}
	for _, o := range h.Ops { // not sorted (hand-made)
		if o.ID == id {
			return o, true
		}
	}
	return Op{}, false
}

// Recorder appends to a history, in memory and as JSON lines in a file
// (each record is written when it happens). Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	h      History
	f      *os.File
	w      *bufio.Writer
	nextID int64
	err    error
	path   string
}

// NewRecorder creates (truncates) the history file at path.
func NewRecorder(path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("nemesis: history file: %w", err)
	}
	return &Recorder{f: f, w: bufio.NewWriterSize(f, 64<<10), path: path}, nil
}

// Path is the history file.
func (r *Recorder) Path() string { return r.path }

func (r *Recorder) write(rec record) {
	r.h.add(rec)
	if r.err != nil {
		return
	}
	b, err := json.Marshal(rec)
	if err == nil {
		b = append(b, '\n')
		_, err = r.w.Write(b)
	}
	if err == nil {
		err = r.w.Flush()
	}
	r.err = err
}

// Meta records the run's description.
func (r *Recorder) Meta(m Meta) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "meta", Meta: &m})
}

// NextOpID hands out operation IDs in invoke order.
func (r *Recorder) NextOpID() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	return r.nextID
}

// Op records a completed operation.
func (r *Recorder) Op(o Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "op", Op: &o})
}

// Nemesis records a fault or lifecycle event.
func (r *Recorder) Nemesis(e NemesisEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "nemesis", Nemesis: &e})
}

// Status records a status observation.
func (r *Recorder) Status(s StatusObs) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "status", Status: &s})
}

// View records a view observation.
func (r *Recorder) View(v ViewObs) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "view", View: &v})
}

// Snapshot records a placement snapshot.
func (r *Recorder) Snapshot(s Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "snapshot", Snapshot: &s})
}

// Activation records an activation-log line.
func (r *Recorder) Activation(a Activation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "activation", Activation: &a})
}

// Migration records a final migration record.
func (r *Recorder) Migration(m MigrationRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "migration", Migration: &m})
}

// Final records the settled state.
func (r *Recorder) Final(f Final) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(record{Type: "final", Final: &f})
}

// History returns a copy of what was recorded, with ops sorted by ID.
func (r *Recorder) History() *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	h.Ops = append([]Op(nil), r.h.Ops...)
	sort.Slice(h.Ops, func(i, j int) bool { return h.Ops[i].ID < h.Ops[j].ID })
	h.Nemesis = append([]NemesisEvent(nil), r.h.Nemesis...)
	h.Statuses = append([]StatusObs(nil), r.h.Statuses...)
	h.Views = append([]ViewObs(nil), r.h.Views...)
	h.Snapshots = append([]Snapshot(nil), r.h.Snapshots...)
	h.Activations = append([]Activation(nil), r.h.Activations...)
	h.Migrations = append([]MigrationRec(nil), r.h.Migrations...)
	return &h
}

// Close flushes and closes the file; it returns the first write error.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return r.err
	}
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = err
	}
	r.f = nil
	return r.err
}

// Load reads a history file (to re-run the checkers on a saved run).
func Load(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := &History{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		h.add(r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(h.Ops, func(i, j int) bool { return h.Ops[i].ID < h.Ops[j].ID })
	return h, nil
}
