package nemesis

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// NodeSpec describes one kelpied process of a scenario.
type NodeSpec struct {
	Name   string
	IP     string // 127.0.0.N, its own address for every listener and connection
	Server bool
}

// DefaultNodes is three servers and one client on 127.0.0.11-14.
func DefaultNodes() []NodeSpec {
	return []NodeSpec{
		{Name: "s1", IP: "127.0.0.11", Server: true},
		{Name: "s2", IP: "127.0.0.12", Server: true},
		{Name: "s3", IP: "127.0.0.13", Server: true},
		{Name: "c1", IP: "127.0.0.14"},
	}
}

// Node is one kelpied: its current process (replaced on restart), data dir,
// activation log and process log.
type Node struct {
	NodeSpec
	DataDir string
	ActLog  string
	LogPath string
	Client  *cluster.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	stopped bool          // SIGSTOPped and not yet continued
	starts  int
}

// running reports whether the current process has not exited.
func (n *Node) running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Cluster is the set of kelpied processes of one scenario. Every process
// change is recorded as a nemesis event. Safe for concurrent use.
type Cluster struct {
	// ExtraArgs are appended to every kelpied command line (set before the
	// first Start), e.g. failure-detector tuning flags.
	ExtraArgs []string

	bin   string
	dir   string
	rec   *Recorder
	nodes []*Node
	hc    *http.Client
	logf  func(format string, args ...any)
}

// NewCluster prepares (does not start) the nodes under dir.
func NewCluster(bin, dir string, specs []NodeSpec, rec *Recorder, logf func(string, ...any)) (*Cluster, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}}
	c := &Cluster{bin: bin, dir: dir, rec: rec, hc: hc, logf: logf}
	for _, s := range specs {
		nd := filepath.Join(dir, s.Name)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return nil, err
		}
		cl, err := cluster.NewClient("http://"+net.JoinHostPort(s.IP, strconv.Itoa(cluster.DefaultHTTPPort)), hc)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &Node{
			NodeSpec: s,
			DataDir:  filepath.Join(nd, "data"),
			ActLog:   filepath.Join(nd, "activations.jsonl"),
			LogPath:  filepath.Join(nd, "kelpied.log"),
			Client:   cl,
		})
	}
	return c, nil
}

// Nodes returns every node, in spec order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Names lists the node names in spec order.
func (c *Cluster) Names() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Name
	}
	return out
}

// Servers lists the server names.
func (c *Cluster) Servers() []string {
	var out []string
	for _, n := range c.nodes {
		if n.Server {
			out = append(out, n.Name)
		}
	}
	return out
}

// IPs maps node names to addresses.
func (c *Cluster) IPs() map[string]string {
	m := map[string]string{}
	for _, n := range c.nodes {
		m[n.Name] = n.IP
	}
	return m
}

// Node returns the named node (nil if none).
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Client returns the API client of the named node.
func (c *Cluster) Client(name string) *cluster.Client { return c.Node(name).Client }

// HTTP is the HTTP client the cluster's API clients share.
func (c *Cluster) HTTP() *http.Client { return c.hc }

func (c *Cluster) args(n *Node) []string {
	args := []string{
		"--node-id", n.Name,
		"--bind", n.IP,
		"--log-level", "info",
		"--data-dir", n.DataDir,
		"--activation-log", n.ActLog,
	}
	var servers []string
	for _, o := range c.nodes {
		if o.Server {
			servers = append(servers, o.Name)
		}
	}
	if n.Server {
		args = append(args, "--server", "--bootstrap-expect", strconv.Itoa(len(servers)))
	}
	for _, o := range c.nodes {
		if o != n && o.Server {
			args = append(args, "--join", net.JoinHostPort(o.IP, strconv.Itoa(cluster.DefaultGossipPort)))
		}
	}
	return append(args, c.ExtraArgs...)
}

// Start launches the named node's process (first start or restart with the
// same data dir).
func (c *Cluster) Start(name string) error {
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("nemesis: no node %q", name)
	}
	if n.running() {
		return fmt.Errorf("nemesis: start %s: already running", name)
	}
	args := c.args(n)
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.starts++
	starts := n.starts
	n.mu.Unlock()
	fmt.Fprintf(logf, "==== nemesis: start #%d at mono %d: %s %s\n", starts, Mono(), c.bin, strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), "TMPDIR="+c.dir)
	// The process dies with the test binary even if the test binary is
	// killed, so no kelpied outlives its namespace's owner.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("nemesis: start %s: %w", name, err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.stopped = cmd, done, false
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvStart, Node: name, Detail: fmt.Sprintf("pid %d, start #%d", cmd.Process.Pid, starts)})
	return nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KELPIE_") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Cluster) current(name string) (*Node, *exec.Cmd, chan struct{}, error) {
	n := c.Node(name)
	if n == nil {
		return nil, nil, nil, fmt.Errorf("nemesis: no node %q", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.done == nil {
		return n, nil, nil, fmt.Errorf("nemesis: %s never started", name)
	}
	select {
	case <-n.done:
		return n, nil, nil, fmt.Errorf("nemesis: %s is not running", name)
	default:
	}
	return n, n.cmd, n.done, nil
}

// Kill sends SIGKILL and waits until the process is gone; the event's time
// is taken then.
func (c *Cluster) Kill(name, detail string) error {
	n, cmd, done, err := c.current(name)
	if err != nil {
		return err
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("nemesis: kill -9 %s: pid %d did not exit", name, cmd.Process.Pid)
	}
	n.mu.Lock()
	n.stopped = false
	n.mu.Unlock()
	c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvKill, Node: name, Detail: detail})
	return nil
}

// Stop sends SIGSTOP and waits until the kernel reports the process
// stopped; the event's time is taken then.
func (c *Cluster) Stop(name string) error {
	n, cmd, _, err := c.current(name)
	if err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("nemesis: SIGSTOP %s: %w", name, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for procState(pid) != "T" {
		if time.Now().After(deadline) {
			return fmt.Errorf("nemesis: SIGSTOP %s: pid %d not stopped (state %q)", name, pid, procState(pid))
		}
		time.Sleep(time.Millisecond)
	}
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvStop, Node: name, Detail: fmt.Sprintf("pid %d", pid)})
	return nil
}

// procState is the state letter of /proc/pid/stat ("R", "S", "T", ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// Cont sends SIGCONT; the event's time is taken just before the signal.
func (c *Cluster) Cont(name string) error {
	n, cmd, _, err := c.current(name)
	if err != nil {
		return err
	}
	c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvCont, Node: name})
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("nemesis: SIGCONT %s: %w", name, err)
	}
	n.mu.Lock()
	n.stopped = false
	n.mu.Unlock()
	return nil
}

// Leave stops the node gracefully (SIGTERM: kelpied drains its actors,
// commits Left, leaves gossip) and waits up to grace for it to exit; after
// that it is killed.
func (c *Cluster) Leave(name string, grace time.Duration) error {
	_, cmd, done, err := c.current(name)
	if err != nil {
		return err
	}
	c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvLeaveBegin, Node: name})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("nemesis: SIGTERM %s: %w", name, err)
	}
	select {
	case <-done:
		code := -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		c.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvExit, Node: name, Detail: fmt.Sprintf("exit code %d", code)})
		return nil
	case <-time.After(grace):
	}
	c.logf("nemesis: %s did not exit %s after SIGTERM; killing it", name, grace)
	return c.Kill(name, "graceful leave timed out")
}

// Running reports whether the node's process is alive (stopped or not).
func (c *Cluster) Running(name string) bool { return c.Node(name).running() }

// Stopped reports whether the node is SIGSTOPped.
func (c *Cluster) Stopped(name string) bool {
	n := c.Node(name)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// Live lists the nodes that run and are not stopped.
func (c *Cluster) Live() []string {
	var out []string
	for _, n := range c.nodes {
		if n.running() && !c.Stopped(n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

// Close kills every process (continuing stopped ones is not needed:
// SIGKILL ends stopped processes too) and records it.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Kill(n.Name, "teardown"); err != nil {
				c.logf("teardown: %v", err)
			}
		}()
	}
	wg.Wait()
}

func callCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// Leader asks every live node and returns the node that says it leads with
// the highest term ("" if none does).
func (c *Cluster) Leader() string {
	best, term := "", uint64(0)
	for _, name := range c.Live() {
		ctx, cancel := callCtx(time.Second)
		s, err := c.Client(name).Status(ctx)
		cancel()
		if err == nil && s.IsLeader && s.Term >= term {
			best, term = name, s.Term
		}
	}
	return best
}

// WaitConverged waits until every node in names serves the same view (epoch
// and index) in which all of them are Active, and the leader is known; it
// returns that view's epoch or an error describing the last state seen.
func (c *Cluster) WaitConverged(ctx context.Context, names []string) (string, error) {
	var last string
	for {
		ok, detail := c.converged(names)
		if ok {
			return detail, nil
		}
		last = detail
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("not converged: %s", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) converged(names []string) (bool, string) {
	var parts []string
	good := true
	var key string
	leaders := map[string]bool{}
	for _, name := range names {
		ctx, cancel := callCtx(time.Second)
		v, err := c.Client(name).View(ctx, 0, 0)
		var st *cluster.Status
		if err == nil {
			st, err = c.Client(name).Status(ctx)
		}
		cancel()
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", name, err))
			good = false
			continue
		}
		k := fmt.Sprintf("%d/%d", v.Epoch, v.Index)
		if key == "" {
			key = k
		} else if key != k {
			good = false
		}
		for _, o := range names {
			if m, ok := v.Member(o); !ok || m.Status != consensus.StatusActive {
				good = false
			}
		}
		if !st.Ready || st.Leader.ID == "" {
			good = false
		}
		leaders[st.Leader.ID] = true
		parts = append(parts, fmt.Sprintf("%s: ready=%v leader=%s view %s", name, st.Ready, st.Leader.ID, DescribeView(v)))
	}
	if len(leaders) != 1 {
		good = false
	}
	return good, strings.Join(parts, "; ")
}

// DescribeView renders a view in one line: epoch, index and every member's
// status and incarnation.
func DescribeView(v consensus.View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "e%d@%d[", v.Epoch, v.Index)
	for i, m := range v.Members {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s#%d", m.ID, m.Status, m.Incarnation)
	}
	b.WriteByte(']')
	return b.String()
}

// LogTail returns the last n lines of the node's log.
func (n *Node) LogTail(lines int) string { return TailFile(n.LogPath, lines) }

// TailFile returns the last n lines of the file at path.
func TailFile(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	var buf []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		buf = append(buf, sc.Text())
		if len(buf) > lines {
			buf = buf[1:]
		}
	}
	return strings.Join(buf, "\n")
}

// LogGrep returns the lines of the node's log that contain any of words
// (at most max, the last ones).
func (n *Node) LogGrep(max int, words ...string) []string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// ReadActivations reads the node's activation log (it survives kill -9 and
// is appended to by every process of the node).
func (n *Node) ReadActivations() ([]Activation, error) {
	f, err := os.Open(n.ActLog)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Activation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var a Activation
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			// A kill -9 can cut the last line short.
			continue
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Mono < out[j].Mono })
	return out, sc.Err()
}
