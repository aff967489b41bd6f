package nemesis

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"
)

// Step is one nemesis action of a schedule. It runs At after the start of
// the fault phase, or as soon as the step before it finished if that is
// later. Do resolves dynamic targets (the current leader, the busiest
// owner) and returns what it actually did.
type Step struct {
	At   time.Duration
	Desc string
	Do   func(e *Env) (string, error)
}

// Env is what steps act on.
type Env struct {
	C    *Cluster
	Net  *Net
	Rec  *Recorder
	Obs  *Observer
	Rand *rand.Rand
	Logf func(string, ...any)

	mu   sync.Mutex
	down map[string]string // node → "killed" or "left", until restarted
	log  []string          // what the steps did, for the report
}

func (e *Env) setDown(node, how string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if how == "" {
		delete(e.down, node)
	} else {
		e.down[node] = how
	}
}

// Down lists the nodes that were killed or left and are not restarted yet.
func (e *Env) Down() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for n := range e.down {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Executed is the schedule as it ran (resolved targets, with times).
func (e *Env) Executed() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

// Leader returns the current leader, waiting up to 15s for one.
func (e *Env) Leader() (string, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if l := e.C.Leader(); l != "" {
			return l, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no leader")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Busiest returns the live node hosting the most actors, preferring nodes
// other than the leader (so that the fault hits an owner, not Raft).
func (e *Env) Busiest() (string, error) {
	leader, _ := e.Leader()
	counts := map[string]int{}
	for _, name := range e.C.Live() {
		ctx, cancel := callCtx(2 * time.Second)
		pl, err := e.C.Client(name).Placements(ctx, "")
		cancel()
		if err != nil {
			continue
		}
		for _, p := range pl.Placements {
			counts[p.Node]++
		}
		break
	}
	best, n := "", -1
	for _, name := range e.C.Live() {
		c := counts[name]
		if name == leader {
			c -= 1000
		}
		if c > n {
			best, n = name, c
		}
	}
	if best == "" {
		return "", fmt.Errorf("no live node")
	}
	return best, nil
}

// RunSchedule runs steps in order; it stops at the first error.
func (e *Env) RunSchedule(ctx context.Context, start time.Time, steps []Step) error {
	for _, s := range steps {
		if d := time.Until(start.Add(s.At)); d > 0 {
			if !sleepCtx(ctx, d) {
				return ctx.Err()
			}
		}
		at := time.Since(start)
		did, err := s.Do(e)
		line := fmt.Sprintf("t+%5.1fs %s", at.Seconds(), s.Desc)
		if did != "" && did != s.Desc {
			line += " → " + did
		}
		if err != nil {
			line += " FAILED: " + err.Error()
		}
		e.mu.Lock()
		e.log = append(e.log, line)
		e.mu.Unlock()
		e.Rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvNote, Detail: line})
		e.Logf("nemesis %s", line)
		if err != nil {
			return err
		}
	}
	return nil
}

// HealAll ends every fault: network healed, stopped nodes continued, dead
// nodes started again.
func (e *Env) HealAll() error {
	var errs []string
	if !e.Net.State().Empty() {
		if err := e.Net.Heal(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, n := range e.C.Names() {
		if e.C.Running(n) && e.C.Stopped(n) {
			if err := e.C.Cont(n); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	for _, n := range e.C.Names() {
		if !e.C.Running(n) {
			if err := e.C.Start(n); err != nil {
				errs = append(errs, err.Error())
			}
			e.setDown(n, "")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

// ---- step constructors ----

func netStep(at time.Duration, desc string, f func(e *Env) (NetState, string, error)) Step {
	return Step{At: at, Desc: desc, Do: func(e *Env) (string, error) {
		s, did, err := f(e)
		if err != nil {
			return did, err
		}
		return did + ": " + s.String(), e.Net.Set(s, desc+" "+did)
	}}
}

// PartitionStep cuts the given groups apart.
func PartitionStep(at time.Duration, groups ...[]string) Step {
	return netStep(at, fmt.Sprintf("partition %v", groups), func(e *Env) (NetState, string, error) {
		return Partition(groups...), "", nil
	})
}

// MinorityStep cuts a random server (and, half the time, a client with
// it) off from the rest.
func MinorityStep(at time.Duration) Step {
	return netStep(at, "minority partition", func(e *Env) (NetState, string, error) {
		servers := e.C.Servers()
		minority := []string{servers[e.Rand.Intn(len(servers))]}
		for _, n := range e.C.Names() {
			if !contains(servers, n) && e.Rand.Intn(2) == 0 {
				minority = append(minority, n)
			}
		}
		rest := without(e.C.Names(), minority...)
		return Partition(minority, rest), fmt.Sprintf("%v | %v", minority, rest), nil
	})
}

// IsolateLeaderStep cuts the current leader off from everyone.
func IsolateLeaderStep(at time.Duration) Step {
	return netStep(at, "isolate the leader", func(e *Env) (NetState, string, error) {
		l, err := e.Leader()
		if err != nil {
			return NetState{}, "", err
		}
		return Isolated(l, e.C.Names()), l, nil
	})
}

// BridgeStep splits the nodes in two sides that only a random server (the
// bridge) connects.
func BridgeStep(at time.Duration) Step {
	return netStep(at, "bridge", func(e *Env) (NetState, string, error) {
		servers := e.C.Servers()
		b := servers[e.Rand.Intn(len(servers))]
		others := without(e.C.Names(), b)
		e.Rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		half := len(others) / 2
		left, right := others[:half], others[half:]
		return Bridge(left, b, right), fmt.Sprintf("%v — %s — %v", left, b, right), nil
	})
}

// OneWayLeaderStep drops every packet from the leader to the others
// (outbound) or from the others to the leader (inbound).
func OneWayLeaderStep(at time.Duration, outbound bool) Step {
	dir := "inbound to"
	if outbound {
		dir = "outbound from"
	}
	return netStep(at, "one-way cut "+dir+" the leader", func(e *Env) (NetState, string, error) {
		l, err := e.Leader()
		if err != nil {
			return NetState{}, "", err
		}
		var pairs [][2]string
		for _, o := range without(e.C.Names(), l) {
			if outbound {
				pairs = append(pairs, [2]string{l, o})
			} else {
				pairs = append(pairs, [2]string{o, l})
			}
		}
		return OneWay(pairs...), l, nil
	})
}

// LossStep drops pct% of the packets between nodes.
func LossStep(at time.Duration, pct int) Step {
	return netStep(at, fmt.Sprintf("%d%% packet loss", pct), func(e *Env) (NetState, string, error) {
		return Loss(pct), "", nil
	})
}

// HealStep removes every network fault.
func HealStep(at time.Duration) Step {
	return Step{At: at, Desc: "heal the network", Do: func(e *Env) (string, error) { return "", e.Net.Heal() }}
}

// Target picks a node when a step runs.
type Target struct {
	Desc string
	Pick func(e *Env) (string, error)
}

// NodeTarget is a fixed node.
func NodeTarget(name string) Target {
	return Target{name, func(*Env) (string, error) { return name, nil }}
}

// LeaderTarget is the current leader.
var LeaderTarget = Target{"the leader", func(e *Env) (string, error) { return e.Leader() }}

// BusiestTarget is the live non-leader node hosting the most actors.
var BusiestTarget = Target{"the busiest owner", func(e *Env) (string, error) { return e.Busiest() }}

// RandomTarget is a random live node.
var RandomTarget = Target{"a random node", func(e *Env) (string, error) {
	live := e.C.Live()
	if len(live) == 0 {
		return "", fmt.Errorf("no live node")
	}
	return live[e.Rand.Intn(len(live))], nil
}}

// KillStep kills the target with SIGKILL.
func KillStep(at time.Duration, t Target) Step {
	return Step{At: at, Desc: "kill -9 " + t.Desc, Do: func(e *Env) (string, error) {
		n, err := t.Pick(e)
		if err != nil {
			return "", err
		}
		if err := e.C.Kill(n, "nemesis"); err != nil {
			return n, err
		}
		e.setDown(n, "killed")
		return n, nil
	}}
}

// RestartStep starts again every node that was killed or left (same data
// dir).
func RestartStep(at time.Duration) Step {
	return Step{At: at, Desc: "restart the dead nodes", Do: func(e *Env) (string, error) {
		var did []string
		for _, n := range e.Down() {
			if err := e.C.Start(n); err != nil {
				return strings.Join(did, " "), err
			}
			e.setDown(n, "")
			did = append(did, n)
		}
		return strings.Join(did, " "), nil
	}}
}

// StopStep freezes the target with SIGSTOP.
func StopStep(at time.Duration, t Target) Step {
	return Step{At: at, Desc: "SIGSTOP " + t.Desc, Do: func(e *Env) (string, error) {
		n, err := t.Pick(e)
		if err != nil {
			return "", err
		}
		return n, e.C.Stop(n)
	}}
}

// ContStep wakes every stopped node with SIGCONT.
func ContStep(at time.Duration) Step {
	return Step{At: at, Desc: "SIGCONT the stopped nodes", Do: func(e *Env) (string, error) {
		var did []string
		for _, n := range e.C.Names() {
			if e.C.Running(n) && e.C.Stopped(n) {
				if err := e.C.Cont(n); err != nil {
					return strings.Join(did, " "), err
				}
				did = append(did, n)
			}
		}
		return strings.Join(did, " "), nil
	}}
}

// LeaveStep stops the target gracefully (SIGTERM: drain, Left, exit) and
// records how another node then sees it.
func LeaveStep(at time.Duration, t Target) Step {
	return Step{At: at, Desc: "graceful leave of " + t.Desc, Do: func(e *Env) (string, error) {
		n, err := t.Pick(e)
		if err != nil {
			return "", err
		}
		start := time.Now()
		if err := e.C.Leave(n, 40*time.Second); err != nil {
			return n, err
		}
		e.setDown(n, "left")
		status := e.observeStatusOf(n, 20*time.Second)
		return fmt.Sprintf("%s exited after %s, seen %s", n, time.Since(start).Round(time.Millisecond), status), nil
	}}
}

// observeStatusOf records views of a live server until node is Left or
// Failed in them (bounded) and returns the status seen.
func (e *Env) observeStatusOf(node string, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	last := "unknown"
	for time.Now().Before(deadline) {
		for _, s := range e.C.Servers() {
			if s == node || !e.C.Running(s) || e.C.Stopped(s) {
				continue
			}
			v, ok := e.Obs.ObserveView(context.Background(), e.C.Node(s))
			if !ok {
				continue
			}
			if m, ok := v.Member(node); ok {
				last = m.Status
				if m.Status == "left" || m.Status == "failed" {
					return last
				}
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

// WaitActiveStep waits (bounded) until every running node is Active in a
// common view: used between the steps of a rolling restart.
func WaitActiveStep(timeout time.Duration) Step {
	return Step{Desc: "wait until every live node is Active", Do: func(e *Env) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		if _, err := e.C.WaitConverged(ctx, e.C.Live()); err != nil {
			return "", err
		}
		return fmt.Sprintf("after %s", time.Since(start).Round(time.Millisecond)), nil
	}}
}

// SleepStep waits d (lets the workload run between faults).
func SleepStep(d time.Duration) Step {
	return Step{Desc: fmt.Sprintf("let it run %s", d), Do: func(e *Env) (string, error) {
		time.Sleep(d)
		return "", nil
	}}
}

// RandomSchedule draws a mixed schedule of about d from seed: one fault at
// a time (a partition, an isolated leader, a bridge, a one-way cut, packet
// loss, a kill -9 with restart, a SIGSTOP shorter or longer than the
// lease), each held for a few seconds (network faults 8-20s), healed, then
// a 2-5s pause.
func RandomSchedule(seed int64, d time.Duration) []Step {
	r := rand.New(rand.NewSource(seed))
	var steps []Step
	t := 3 * time.Second
	sec := func(lo, hi int) time.Duration {
		return time.Duration(lo*1000+r.Intn((hi-lo)*1000+1)) * time.Millisecond
	}
	for t < d {
		hold := sec(8, 20) // partitions: detection across one takes up to ~12s
		switch r.Intn(9) {
		case 0:
			steps = append(steps, MinorityStep(t), HealStep(t+hold))
		case 1:
			steps = append(steps, IsolateLeaderStep(t), HealStep(t+hold))
		case 2:
			steps = append(steps, BridgeStep(t), HealStep(t+hold))
		case 3:
			steps = append(steps, OneWayLeaderStep(t, r.Intn(2) == 0), HealStep(t+hold))
		case 4:
			steps = append(steps, LossStep(t, 5+r.Intn(16)), HealStep(t+hold))
		case 5:
			hold = sec(4, 14)
			steps = append(steps, KillStep(t, LeaderTarget), RestartStep(t+hold))
		case 6:
			hold = sec(4, 14)
			steps = append(steps, KillStep(t, BusiestTarget), RestartStep(t+hold))
		case 7:
			hold = sec(6, 12) // longer than the lease
			steps = append(steps, StopStep(t, BusiestTarget), ContStep(t+hold))
		case 8:
			hold = sec(1, 3) // shorter than the lease
			steps = append(steps, StopStep(t, RandomTarget), ContStep(t+hold))
		}
		t += hold + sec(2, 5)
	}
	return steps
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
