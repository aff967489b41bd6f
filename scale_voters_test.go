package cluster

import (
	"bufio"
	"context"
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
// on stdout and runs until its stdin closes.
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
	fmt.Fprintf(os.Stdout, "%s%s\n", votersMarker, b)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or exits
}

// remoteVoters is the parent's handle on the helper: the voters' addresses
// and the leader's committed view, followed with blocking queries.
type remoteVoters struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.Closer
	addrs  votersAddrs
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu          sync.Mutex
	v           consensus.View
	leaderKnown bool
}

// startRemoteVoters starts the helper process and follows its leader's
// view. Cleanup stops both.
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
	r := &remoteVoters{t: t, cmd: cmd, stdin: in, done: make(chan struct{})}
	t.Cleanup(r.stop)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, votersMarker); ok {
			if err := json.Unmarshal([]byte(rest), &r.addrs); err != nil {
				t.Fatalf("voters helper: %q: %v", line, err)
			}
			break
		}
		fmt.Fprintln(os.Stdout, line)
	}
	if len(r.addrs.HTTP) == 0 {
		t.Fatalf("voters helper ended without reporting its addresses (%v)", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }() // its test verdict; the servers log to stderr
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.follow(ctx)
	waitFor(t, 30*time.Second, "the voters' view", func() bool { v, ok := r.view(); return ok && v.Index > 0 })
	return r
}

// stop ends the follower and the helper process; it is idempotent.
func (r *remoteVoters) stop() { r.once.Do(r.stopOnce) }

func (r *remoteVoters) stopOnce() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	_ = r.stdin.Close()
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
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

// view returns the latest committed view seen from the leader, and whether
// a leader is known right now.
func (r *remoteVoters) view() (consensus.View, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.v, r.leaderKnown
}

// follow keeps r.v at the leader's committed view with blocking queries (a
// view is answered as soon as the leader publishes it) and re-checks who
// leads after every answer.
func (r *remoteVoters) follow(ctx context.Context) {
	defer close(r.done)
	var c *Client
	var id string
	for ctx.Err() == nil {
		if c == nil {
			c, id = r.findLeader(ctx)
			r.mu.Lock()
			r.leaderKnown = c != nil
			r.mu.Unlock()
			if c == nil {
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
		}
		cur, _ := r.view()
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := c.View(vctx, cur.Index, time.Second)
		cancel()
		if err != nil {
			c = nil
			continue
		}
		r.mu.Lock()
		if v.Index > r.v.Index {
			r.v = v
		}
		r.mu.Unlock()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		li, err := c.Leader(lctx)
		cancel()
		if err != nil || !li.Known || li.ID != id {
			c = nil
		}
	}
}

// findLeader asks every voter who leads and returns a client for it.
func (r *remoteVoters) findLeader(ctx context.Context) (*Client, string) {
	for _, addr := range r.addrs.HTTP {
		c, err := NewClient(addr, nil)
		if err != nil {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		li, err := c.Leader(lctx)
		cancel()
		if err != nil || !li.Known || li.HTTPAddr == "" {
			continue
		}
		lc, err := NewClient(li.HTTPAddr, nil)
		if err != nil {
			continue
		}
		return lc, li.ID
	}
	return nil, ""
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
