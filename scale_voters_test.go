package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// The scale benchmark runs its three voters in a child process (this test
// binary again, running TestScaleVotersHelper) and the fleet of clients in
// its own process.
//
// Why: this is an artefact of simulating a fleet in one process, not a
// product setting. In a real fleet every member is its own process on its
// own machine; here up to 997 members' memberlist instances share one Go
// scheduler and two cores. During a join storm that scheduler's run-queue
// latency reaches seconds (p99 0.7-5 s measured at 250 members, see
// KELPIE_BENCH_SCALE_DIAG), and Raft goroutines sharing it miss their 500 ms
// leader lease and 1 s election timeouts: the voters lost their leader a
// second into the storm and stayed Candidates for a minute or more. A
// child process has its own Go scheduler; the kernel still shares the two
// cores between both processes, the voters still gossip with every member
// and still serve every client's leases and view follows, so everything
// the product does at N is still measured. What is no longer measured is
// the voters waiting in line behind 997 other members' goroutines, which
// no deployment has.
//
// For the same reason the helper, not the busy parent, watches the leader's
// committed view and reports it with its times (reportViews).
const (
	envScaleVotersHelper = "KELPIE_BENCH_SCALE_VOTERS_HELPER"
	votersMarker         = "KELPIE-SCALE-VOTERS "
)

// votersAddrs is what the helper reports once its voters have a leader.
type votersAddrs struct {
	Gossip []string `json:"gossip"`
	HTTP   []string `json:"http"`
}

// TestScaleVotersHelper is the child process of the scale benchmark: it
// starts three voters with the production profile, reports their addresses
// on stdout, then reports every view its leader commits (watched in
// process, stamped with this process's clock) until its stdin closes.
//
// The views are reported from here rather than fetched by the parent
// because the parent, simulating the fleet, is the busy process: at 1,000
// members its own HTTP follower saw the leader's views up to 50 s late.
func TestScaleVotersHelper(t *testing.T) {
	if os.Getenv(envScaleVotersHelper) != "1" {
		t.Skip("helper process of TestScaleJoinStorm1000")
	}
	raiseNoFile(t)
	defer startScaleProfile(t, fmt.Sprintf("voters-%d.pprof", os.Getpid()))()
	tc := newTestCluster(t)
	servers := tc.startServers(3, nodeOpts{durable: true, mutate: scaleServerLog})
	tc.waitLeader()
	var a votersAddrs
	for _, s := range servers {
		a.Gossip = append(a.Gossip, s.GossipAddr())
		a.HTTP = append(a.HTTP, s.HTTPAddr())
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "%s%s\n", votersMarker, b)
	out.Flush()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or exits
		close(done)
	}()
	reportViews(tc, out, done)
}

// reportViews writes a line for every view the leader commits, and once a
// second a line for the current one (so that the parent sees whether a
// leader is known), until done closes:
//
//	VIEW <unix ns> <leader known 0|1> <index> <epoch> <active> <joining> <members>
//	FAILED <unix ns> <member>   (a member newly Failed in that view)
func reportViews(tc *testCluster, out *bufio.Writer, done <-chan struct{}) {
	var last consensus.View
	report := func(at time.Time, leaderKnown bool) {
		fmt.Fprintf(out, "VIEW %d %d %d %d %d %d %d\n", at.UnixNano(), b2i(leaderKnown), last.Index, last.Epoch,
			last.Count(consensus.StatusActive), last.Count(consensus.StatusJoining), len(last.Members))
		out.Flush()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var ch <-chan struct{} // nil (never ready) while no leader is known
		if leader := tc.leader(); leader != nil {
			var v consensus.View
			v, ch = leader.fsm.Watch()
			if v.Index > last.Index {
				now := time.Now()
				for _, m := range v.Members {
					if m.Status != consensus.StatusFailed {
						continue
					}
					if p, ok := last.Member(m.ID); !ok || p.Status != consensus.StatusFailed || p.Incarnation != m.Incarnation {
						fmt.Fprintf(out, "FAILED %d %s\n", now.UnixNano(), m.ID)
					}
				}
				last = v
				report(now, true)
			}
		}
		select {
		case <-done:
			return
		case <-ch:
		case <-tick.C:
			report(time.Now(), tc.leader() != nil)
		case <-time.After(100 * time.Millisecond): // leadership may have moved
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// viewSummary is what the helper reports of a committed view.
type viewSummary struct {
	At                     time.Time // when the leader had it (helper's clock)
	LeaderKnown            bool
	Index, Epoch           uint64
	Active, Joining, Count int
}

// remoteVoters is the parent's handle on the helper: the voters' addresses
// and what the helper reports of the leader's views.
type remoteVoters struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.Closer
	addrs votersAddrs
	done  chan struct{} // closed when the helper's output ends
	once  sync.Once

	mu     sync.Mutex
	last   viewSummary
	failed map[string]time.Time // last time each member was newly committed Failed
}

// startRemoteVoters starts the helper process and reads its reports.
// Cleanup stops it.
func startRemoteVoters(t *testing.T) *remoteVoters {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestScaleVotersHelper$", "-test.count=1", "-test.timeout=0")
	// Its own 127.B.0.0/16, apart from this process's.
	cmd.Env = append(os.Environ(), envScaleVotersHelper+"=1", envTestIPBase+"="+strconv.Itoa(10+(ipBase-10+100)%200))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start voters helper: %v", err)
	}
	r := &remoteVoters{t: t, cmd: cmd, stdin: in, done: make(chan struct{}), failed: map[string]time.Time{}}
	t.Cleanup(r.stop)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), votersMarker); ok {
			if err := json.Unmarshal([]byte(rest), &r.addrs); err != nil {
				t.Fatalf("voters helper: %q: %v", sc.Text(), err)
			}
			break
		}
	}
	if len(r.addrs.HTTP) == 0 {
		t.Fatalf("voters helper ended without reporting its addresses (%v)", sc.Err())
	}
	go r.read(sc)
	waitFor(t, 30*time.Second, "the voters' view", func() bool { return r.view().Index > 0 })
	return r
}

// read takes in the helper's reports until its output ends.
func (r *remoteVoters) read(sc *bufio.Scanner) {
	defer close(r.done)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue // the helper's test verdict
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, ns)
		switch {
		case f[0] == "FAILED":
			r.mu.Lock()
			r.failed[f[2]] = at
			r.mu.Unlock()
		case f[0] == "VIEW" && len(f) == 8:
			var n [6]uint64
			for i := range n {
				n[i], _ = strconv.ParseUint(f[2+i], 10, 64)
			}
			r.mu.Lock()
			r.last = viewSummary{At: at, LeaderKnown: n[0] == 1, Index: n[1], Epoch: n[2], Active: int(n[3]), Joining: int(n[4]), Count: int(n[5])}
			r.mu.Unlock()
		}
	}
}

// stop ends the helper process; it is idempotent.
func (r *remoteVoters) stop() { r.once.Do(r.stopOnce) }

func (r *remoteVoters) stopOnce() {
	_ = r.stdin.Close()
	exited := make(chan error, 1)
	go func() {
		<-r.done // Wait must not run before the output is read
		exited <- r.cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			r.t.Logf("voters helper: %v", err)
		}
	case <-time.After(time.Minute):
		r.t.Logf("voters helper did not stop within a minute; killing pid %d", r.cmd.Process.Pid)
		_ = r.cmd.Process.Kill()
		<-exited
	}
}

// seed is one voter's gossip address, i of them round-robin.
func (r *remoteVoters) seed(i int) []string { return []string{r.addrs.Gossip[i%len(r.addrs.Gossip)]} }

// view returns the helper's latest report of the leader's committed view.
func (r *remoteVoters) view() viewSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// failedAfter returns when the leader committed id Failed, if it did after
// t.
func (r *remoteVoters) failedAfter(id string, t time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.failed[id]
	return at, ok && at.After(t)
}

// procCPU returns the user+system CPU time pid has used (Linux
// /proc/<pid>/stat, in clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name (which may contain spaces) in parens.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
