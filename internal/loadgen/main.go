// Command loadgen is the HTTP placement load driver of `make bench-http`: a
// separate process that calls PUT /v1/placements/{actor} on running kelpied
// servers at several concurrencies, each for a fixed window, and writes
// placements/s and p50/p99 latency as benchrec records (section "http") to
// $KELPIE_BENCH_OUT. scripts/bench-http.sh starts the servers and runs it.
//
// It is a program under internal/ rather than a kelpiectl subcommand: it is
// a benchmark harness with no operator use, and keeping it out of kelpiectl
// keeps the CLI's surface (and its exit-code contract) unchanged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/internal/benchload"
	"github.com/kelpie/cluster/internal/benchrec"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	addrs := flag.String("addrs", "127.0.0.21:7500,127.0.0.22:7500,127.0.0.23:7500", "HTTP addresses of the servers (comma-separated)")
	target := flag.String("target", "leader", "where requests go: leader (found through GET /v1/leader) or all (round robin; followers forward)")
	ladder := flag.String("inflight", "1,16,64,256,1024", "concurrencies to measure (comma-separated)")
	window := flag.Duration("window", 5*time.Second, "measured time per concurrency")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up per concurrency")
	prefix := flag.String("prefix", "h"+strconv.FormatInt(time.Now().Unix(), 36), "actor name prefix (unique per run)")
	flag.Parse()

	var levels []int
	maxInflight := 0
	for _, s := range strings.Split(*ladder, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-inflight: %q is not a positive number", s)
		}
		levels = append(levels, n)
		maxInflight = max(maxInflight, n)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: maxInflight * 2, MaxIdleConnsPerHost: maxInflight, IdleConnTimeout: time.Minute}}
	var clients []*cluster.Client
	for _, a := range strings.Split(*addrs, ",") {
		c, err := cluster.NewClient(strings.TrimSpace(a), hc)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	ctx := context.Background()
	if *target == "leader" {
		c, err := leaderClient(ctx, clients, hc)
		if err != nil {
			return err
		}
		clients = []*cluster.Client{c}
	} else if *target != "all" {
		return fmt.Errorf("-target %q: want leader or all", *target)
	}

	method := fmt.Sprintf("separate load-driver process, PUT /v1/placements/{actor} (new actor each call) to %s of 3 kelpied voters on loopback (raft-wal fsync on), closed loop, fixed %s window after %s warm-up, keep-alive connections",
		*target, *window, *warmup)
	for _, inflight := range levels {
		r := benchload.Closed(ctx, inflight, *warmup, *window, func(ctx context.Context, i int64) error {
			c := clients[int(i)%len(clients)]
			_, err := c.Place(ctx, *prefix+"-"+strconv.Itoa(inflight)+"-"+strconv.FormatInt(i, 10), cluster.PlaceOptions{})
			return err
		})
		if r.FirstErr != nil {
			return fmt.Errorf("inflight %d: %d errors, first: %w", inflight, r.Errors, r.FirstErr)
		}
		p := map[string]string{"inflight": strconv.Itoa(inflight), "voters": "3", "target": *target}
		for _, rec := range []benchrec.Record{
			{Section: "http", Metric: "http_place_per_s", Value: r.PerSecond(), Unit: "ops/s"},
			{Section: "http", Metric: "http_place_p50", Value: r.P(50), Unit: "ms"},
			{Section: "http", Metric: "http_place_p99", Value: r.P(99), Unit: "ms"},
		} {
			rec.Params, rec.Method, rec.Samples = p, method, r.Ops
			line, err := benchrec.Emit(rec)
			if err != nil {
				return err
			}
			fmt.Println(line)
		}
	}
	return nil
}

// leaderClient asks the servers for the leader until one names a leader
// with an HTTP address (up to 30 s).
func leaderClient(ctx context.Context, clients []*cluster.Client, hc *http.Client) (*cluster.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	var last error = errors.New("no answer")
	for time.Now().Before(deadline) {
		for _, c := range clients {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			li, err := c.Leader(cctx)
			cancel()
			if err != nil {
				last = err
				continue
			}
			if li.Known && li.HTTPAddr != "" {
				return cluster.NewClient(li.HTTPAddr, hc)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader known: %w", last)
}
