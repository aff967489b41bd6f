package main

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"path/filepath"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/internal/demohost"
	"github.com/kelpie/cluster/metrics"
)

const (
	// leaveTimeout bounds the graceful leave on the first signal. Leave
	// needs a quorum commit (bounded by the node's QuorumTimeout, 5s by
	// default) plus a leadership transfer on the leader; 15s covers both
	// with room to spare and still stops well inside a typical supervisor's
	// kill timeout (systemd: 90s, Kubernetes: 30s).
	leaveTimeout = 15 * time.Second
	// joinAttemptTimeout bounds one Join call; the agent logs and retries
	// until it succeeds or the agent is stopped.
	joinAttemptTimeout = 30 * time.Second
	// joinRetryDelay is the pause between Join attempts.
	joinRetryDelay = 1 * time.Second
)

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runAgent runs the node until SIGINT/SIGTERM: Start, Join in the background,
// then on the first signal a bounded graceful Leave and Close. A second
// signal closes at once.
func runAgent(ctx context.Context, o *options) error {
	logger := newLogger(os.Stderr, o.logLevel, o.logFormat)
	cfg := o.cfg

	// Catch signals from the start so that an early Ctrl-C still cleans up.
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigCh)

	if o.tempDataDir {
		dir, err := os.MkdirTemp("", "kelpied-dev-")
		if err != nil {
			return fmt.Errorf("dev data dir: %w", err)
		}
		cfg.DataDir = dir
		defer func() {
			if err := os.RemoveAll(dir); err != nil {
				logger.Warn("could not remove the temporary data dir", "dir", dir, "err", err)
			}
		}()
	}
	if cfg.Server && cfg.DataDir == "" {
		logger.Warn("no --data-dir: Raft state is kept in memory and nothing survives a restart")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// raft, serf and memberlist report through the process-global go-metrics
	// handler; bridge it into this registry (once per process).
	if err := metrics.InstallGoMetrics(reg); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	cfg.Registry = reg
	cfg.Logger = logger

	if o.activationLog != "" {
		if err := os.MkdirAll(filepath.Dir(o.activationLog), 0o700); err != nil {
			return fmt.Errorf("activation log: %w", err)
		}
	}
	host, err := demohost.New(cfg.NodeID, o.activationLog)
	if err != nil {
		return err
	}
	defer host.Close()
	cfg.Handlers = map[string]http.Handler{
		"GET /v1/demo/activations": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"node": cfg.NodeID, "events": host.Events(), "active": host.Active()})
		}),
	}
	if o.enableDebug {
		// Go's profiler, for an operator (the write token when ACLs are on).
		cfg.Handlers["GET /debug/pprof/"] = http.HandlerFunc(pprof.Index)
		cfg.Handlers["GET /debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		cfg.Handlers["GET /debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
		cfg.Handlers["GET /debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		cfg.Handlers["GET /debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
	}
	node, err := cluster.New(cfg, host)
	if err != nil {
		return err
	}
	logger.Info("starting", "node", cfg.NodeID, "version", version, "server", cfg.Server,
		"bootstrap_expect", cfg.BootstrapExpect, "voters", cfg.Voters.Voters, "seeds", o.seeds,
		"data_dir", cfg.DataDir, "dev", o.dev)
	// SIGHUP reloads the TLS certificate, key and CA files.
	hupCh := make(chan os.Signal, 1)
	signal.Notify(hupCh, syscall.SIGHUP)
	defer signal.Stop(hupCh)
	go func() {
		for range hupCh {
			if !cfg.TLS.Enabled() {
				logger.Info("SIGHUP: nothing to reload (TLS is not configured)")
				continue
			}
			if err := node.ReloadTLS(); err != nil {
				logger.Error("SIGHUP: TLS reload failed; keeping the previous certificates", "err", err)
			}
		}
	}()
	if err := node.Start(ctx); err != nil {
		_ = node.Close()
		return fmt.Errorf("start: %w", err)
	}
	role := "client"
	if cfg.Server {
		role = "server"
	}
	line := fmt.Sprintf("kelpied %s: node %s (%s) http=http://%s gossip=%s", version, cfg.NodeID, role, node.HTTPAddr(), node.GossipAddr())
	if cfg.Server {
		line += " raft=" + node.RaftAddr()
	}
	if cfg.DataDir != "" {
		line += " data-dir=" + cfg.DataDir
	}
	fmt.Fprintln(os.Stdout, line)

	joinCtx, cancelJoin := context.WithCancel(ctx)
	joinDone := make(chan struct{})
	go func() {
		defer close(joinDone)
		joinLoop(joinCtx, node, o.seeds, logger)
	}()

	leftViaAPI := false
	select {
	case s := <-sigCh:
		logger.Info("signal received; leaving the cluster", "signal", s.String(), "timeout", leaveTimeout)
	case <-ctx.Done():
		logger.Info("stopping; leaving the cluster", "timeout", leaveTimeout)
	case <-node.LeftCh():
		// POST /v1/agent/leave (kelpiectl leave): the node has already left.
		leftViaAPI = true
		logger.Info("left the cluster through the API; stopping")
	}
	cancelJoin()
	<-joinDone

	if !leftViaAPI {
		leaveCtx, cancelLeave := context.WithTimeout(context.Background(), leaveTimeout)
		leaveErr := make(chan error, 1)
		go func() { leaveErr <- node.Leave(leaveCtx) }()
		select {
		case err := <-leaveErr:
			if err != nil {
				logger.Warn("graceful leave failed; peers will see this node fail", "err", err)
			}
		case s := <-sigCh:
			logger.Warn("second signal; closing without a graceful leave", "signal", s.String())
		}
		cancelLeave()
	}
	if err := node.Close(); err != nil {
		logger.Warn("close", "err", err)
	}
	logger.Info("stopped")
	return nil
}

// joinLoop calls Join until the node is Active in the committed view or ctx
// ends, logging every failed attempt.
func joinLoop(ctx context.Context, node *cluster.Node, seeds []string, logger *slog.Logger) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
		err := node.Join(actx, seeds)
		cancel()
		if err == nil {
			logger.Info("joined the cluster", "seeds", seeds, "epoch", node.View().Epoch,
				"took", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			return
		}
		if ctx.Err() != nil || errors.Is(err, cluster.ErrClosed) {
			return
		}
		logger.Warn("join not complete; retrying", "attempt", attempt, "seeds", seeds, "err", err)
		t := time.NewTimer(joinRetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
