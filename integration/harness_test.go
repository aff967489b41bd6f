package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
)

// Binaries built once by TestMain.
var (
	kelpiedBin   string
	kelpiectlBin string
)

const (
	// stopGrace is how long a SIGTERMed kelpied gets before SIGKILL: its
	// graceful leave is bounded at 15s.
	stopGrace = 20 * time.Second
	// logTailLines is how much of each node's log a failed test prints.
	logTailLines = 80
	// pollEvery is the waitFor polling interval.
	pollEvery = 200 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kelpie-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct {
		dst *string
		pkg string
	}{
		{&kelpiedBin, "github.com/kelpie/cluster/cmd/kelpied"},
		{&kelpiectlBin, "github.com/kelpie/cluster/cmd/kelpiectl"},
	} {
		out, err := nemesis.BuildCmd(dir, b.pkg, "integration")
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
		*b.dst = out
	}
	return m.Run()
}

// nodeOpts describes one kelpied process. Every node has its own loopback IP
// and uses the default ports on it.
type nodeOpts struct {
	Name            string
	IP              string // 127.0.0.N, N in 150..199 (unique per test)
	Server          bool
	BootstrapExpect int
	Join            []string // gossip addresses (ip:port)
	Dev             bool
	LogLevel        string // default info
	Extra           []string
}

func gossipAddr(ip string) string { return ip + ":" + strconv.Itoa(cluster.DefaultGossipPort) }
func httpURL(ip string) string    { return "http://" + ip + ":" + strconv.Itoa(cluster.DefaultHTTPPort) }

// proc is one node: its process (replaced on restart), data dir and log.
type proc struct {
	opts    nodeOpts
	dataDir string
	logPath string
	client  *cluster.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the current process has exited
	state  *os.ProcessState
	starts int
}

func (p *proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// running reports whether the current process has not exited.
func (p *proc) running() bool {
	_, done := p.current()
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

// harness runs kelpied processes for one test and stops all of them (by PID)
// when the test ends, printing the tail of every log if it failed.
type harness struct {
	t    *testing.T
	base string

	mu    sync.Mutex
	nodes map[string]*proc
	order []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	// The base dir is created before the cleanup below is registered, so it
	// is removed only after every process has been stopped.
	h := &harness{t: t, base: t.TempDir(), nodes: map[string]*proc{}}
	t.Cleanup(h.cleanup)
	return h
}

func (h *harness) cleanup() {
	h.mu.Lock()
	var all []*proc
	for _, name := range h.order {
		all = append(all, h.nodes[name])
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stopProc(p, syscall.SIGTERM, stopGrace)
		}()
	}
	wg.Wait()
	if dir := os.Getenv("KELPIE_TEST_LOG_DIR"); dir != "" {
		for _, p := range all {
			copyFile(p.logPath, filepath.Join(dir, strings.ReplaceAll(h.t.Name(), "/", "_")+"-"+p.opts.Name+".log"))
		}
	}
	if h.t.Failed() {
		for _, p := range all {
			h.t.Logf("---- last %d lines of %s (%s) ----\n%s", logTailLines, p.opts.Name, p.logPath, nemesis.TailFile(p.logPath, logTailLines))
		}
	}
}

// start launches a new node.
func (h *harness) start(o nodeOpts) *proc {
	h.t.Helper()
	h.mu.Lock()
	if _, dup := h.nodes[o.Name]; dup {
		h.mu.Unlock()
		h.t.Fatalf("node %s started twice; use restart", o.Name)
	}
	c, err := cluster.NewClient(httpURL(o.IP), &http.Client{})
	if err != nil {
		h.mu.Unlock()
		h.t.Fatalf("client for %s: %v", o.Name, err)
	}
	p := &proc{
		opts:    o,
		dataDir: filepath.Join(h.base, o.Name, "data"),
		logPath: filepath.Join(h.base, o.Name+".log"),
		client:  c,
	}
	h.nodes[o.Name] = p
	h.order = append(h.order, o.Name)
	h.mu.Unlock()
	h.launch(p)
	return p
}

// restart starts a stopped node again with the same IP, flags and data dir.
func (h *harness) restart(name string) *proc {
	h.t.Helper()
	p := h.node(name)
	if p.running() {
		h.t.Fatalf("restart %s: still running", name)
	}
	h.launch(p)
	return p
}

func (h *harness) launch(p *proc) {
	h.t.Helper()
	o := p.opts
	args := []string{
		"--node-id", o.Name,
		"--bind", o.IP,
		"--log-level", cmp(o.LogLevel, "info"),
	}
	if o.Dev {
		args = append(args, "--dev")
	} else {
		args = append(args, "--data-dir", p.dataDir)
	}
	if o.Server {
		args = append(args, "--server")
	}
	if o.BootstrapExpect > 0 {
		args = append(args, "--bootstrap-expect", strconv.Itoa(o.BootstrapExpect))
	}
	for _, j := range o.Join {
		args = append(args, "--join", j)
	}
	args = append(args, o.Extra...)

	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatalf("log file for %s: %v", o.Name, err)
	}
	p.mu.Lock()
	p.starts++
	fmt.Fprintf(logf, "==== harness: start #%d at %s: %s %s\n", p.starts, time.Now().Format(time.RFC3339Nano), kelpiedBin, strings.Join(args, " "))
	p.mu.Unlock()

	cmd := exec.Command(kelpiedBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Keep KELPIE_* settings of the environment running the tests out of the
	// nodes; a dev node's temporary data dir goes under the test's dir.
	cmd.Env = append(cleanEnv(), "TMPDIR="+h.base)
	if err := cmd.Start(); err != nil {
		logf.Close()
		h.t.Fatalf("start %s: %v", o.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
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

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (h *harness) node(name string) *proc {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.nodes[name]
	if !ok {
		h.t.Fatalf("no node %q", name)
	}
	return p
}

// client returns the HTTP API client of a node.
func (h *harness) client(name string) *cluster.Client { return h.node(name).client }

// kill9 kills a node's process with SIGKILL and waits until it is gone.
func (h *harness) kill9(name string) {
	h.t.Helper()
	p := h.node(name)
	if !h.stopProc(p, syscall.SIGKILL, 10*time.Second) {
		h.t.Fatalf("kill -9 %s: process did not exit", name)
	}
}

// term sends SIGTERM (graceful leave) and waits; after grace it kills.
func (h *harness) term(name string, grace time.Duration) {
	h.t.Helper()
	p := h.node(name)
	if !h.stopProc(p, syscall.SIGTERM, grace) {
		h.t.Fatalf("stop %s: process did not exit", name)
	}
}

// stopProc signals the current process of p by PID and waits up to grace for
// it to exit, then SIGKILLs it. It reports whether the process is gone.
func (h *harness) stopProc(p *proc, sig syscall.Signal, grace time.Duration) bool {
	cmd, done := p.current()
	if cmd == nil || cmd.Process == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(grace):
	}
	if sig != syscall.SIGKILL {
		h.t.Logf("%s (pid %d) did not exit %s after %s; sending SIGKILL", p.opts.Name, cmd.Process.Pid, grace, sig)
		_ = cmd.Process.Kill()
		select {
		case <-done:
			return true
		case <-time.After(10 * time.Second):
		}
	}
	return false
}

// exitStatus returns how the node's last process ended (nil while running).
func (h *harness) exitStatus(name string) *os.ProcessState {
	p := h.node(name)
	if p.running() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// waitFor polls cond until it reports true or timeout passes; then the test
// fails with desc and the last detail cond returned.
func waitFor(t *testing.T, timeout time.Duration, desc string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var detail string
	for {
		var ok bool
		ok, detail = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, desc, detail)
		}
		time.Sleep(pollEvery)
	}
}

// reqCtx is the context for one API call in a test.
func reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Second)
}

// viewOf fetches a node's committed view (not a blocking query).
func viewOf(c *cluster.Client) (consensus.View, error) {
	ctx, cancel := reqCtx()
	defer cancel()
	return c.View(ctx, 0, 0)
}

func statusOf(c *cluster.Client) (*cluster.Status, error) {
	ctx, cancel := reqCtx()
	defer cancel()
	return c.Status(ctx)
}

// isNotReady reports whether err is the API's 503 not_ready answer.
func isNotReady(err error) bool {
	var ae *cluster.APIError
	return errors.As(err, &ae) && ae.Body.Code == "not_ready"
}

// describeView is a compact one-line form for failure messages.
func copyFile(src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		return
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return
	}
	out, err := os.Create(dst)
	if err != nil {
		return
	}
	defer out.Close()
	_, _ = io.Copy(out, in)
}
