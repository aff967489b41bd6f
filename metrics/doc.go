// Package metrics declares every kelpie_* metric in one place and registers
// them on a registry the embedding application passes in (there is no global
// registry in library code). It also bridges the go-metrics that raft, serf
// and memberlist report into a Prometheus registry (InstallGoMetrics), and
// ships a Grafana dashboard (dashboards/kelpie.json) and Prometheus alerting
// rules (alerts.yml) that use those metrics.
//
// What it owns: metric names, help, units, labels and histogram buckets; the
// go-metrics renaming. What it does not: when things are counted (the node
// calls the methods here) and serving /metrics (the node's HTTP API does).
//
// Concurrency: counters and histograms are updated by the node as things
// happen; gauges that mirror node state (leadership, Raft indexes, voters,
// gossip members, the placement table, leases) are read from a Source at
// scrape time. All methods are safe for concurrent use.
//
// Process globals: go-metrics keeps one global handler per process.
// InstallGoMetrics replaces it once per process and registers the same
// bridge on every registry it is given; New never touches it. Nothing here
// uses prometheus.DefaultRegisterer.
//
// # Histogram buckets and the latencies behind them
//
// Failure detection was measured with TestMetricsFailureDetectionLatency in
// the root package (KELPIE_MEASURE=1): 3 servers and six client crashes
// (tc.stop) per profile, in-process on loopback.
//
//	                                   test profile      default LAN profile
//	crash → leader's gossip says dead  0.86–1.15 s       5.1–6.5 s
//	gossip signal → committed Failed   21–24 ms          75–103 ms
//	crash → committed Failed           0.88–1.17 s       5.2–6.6 s
//	last lease grant → committed       1.13–1.79 s       5.3–7.6 s
//
// The test profile probes every 200 ms with a 600 ms minimum suspicion and a
// 20 ms reconcile batch delay; the LAN profile probes every 1 s with a 4 s
// minimum suspicion (SuspicionMult 4, N < 10) and a 100 ms batch delay, lease
// 4 s (renewed every 1.33 s). kelpie_failure_detection_seconds (gossip signal
// → commit) is therefore dominated by ReconcileBatchDelay on a healthy
// cluster, and its buckets bracket 25 ms and 100 ms closely, then run to 30 s
// for commits that waited for an election.
// kelpie_failure_detection_since_last_lease_seconds is the end-to-end figure;
// its buckets are 0.5–1 s apart from 1 to 8 s and reach 60 s, since
// suspicion grows with log10 of the cluster size (~9–11 s at 100 nodes,
// ~13–15 s at 1,000).
//
// Placement: 30 sequential Place calls through 5 in-process nodes took
// 11.5 ms (≈0.4 ms each; ≈2.8 ms each under -race); BenchmarkPlaceThroughput
// (3 voters, raft-wal with fsync) gave p50 0.6–0.9 ms / p99 2–4 ms at 1 call
// in flight and p50 2–3 ms / p99 8 ms at 64. The request and commit buckets
// therefore start at 0.25 ms and run to the 5 s quorum timeout.
package metrics
