package cluster

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
	"github.com/kelpie/cluster/placement"
)

// TestMetricsFailureDetectionLatency measures what the failure-detection
// histograms see, to choose their buckets: a client is crashed (tc.stop)
// and the leader is watched for the gossip failure signal and the Failed
// commit. It runs the in-process test profile and the default LAN gossip
// profile (with the default reconcile delay and lease), 3 servers and 1
// client. It is slow (~1 min), so it only runs with KELPIE_MEASURE=1; the
// figures it printed are in metrics/doc.go.
func TestMetricsFailureDetectionLatency(t *testing.T) {
	if os.Getenv("KELPIE_MEASURE") == "" {
		t.Skip("set KELPIE_MEASURE=1 to measure failure-detection latencies")
	}
	rounds := 6
	profiles := []struct {
		name   string
		mutate func(*Config)
	}{
		{"test-profile", nil},
		{"lan-profile", func(c *Config) {
			d := DefaultConfig()
			c.Gossip = gossip.DefaultConfig()
			c.ReconcileBatchDelay = d.ReconcileBatchDelay
			c.ReconcileInterval = d.ReconcileInterval
			c.Lease = placement.DefaultLeaseConfig()
		}},
	}
	for _, prof := range profiles {
		t.Run(prof.name, func(t *testing.T) {
			tc := newTestCluster(t)
			tc.startServers(3, nodeOpts{mutate: prof.mutate})
			var detect, commit, total, hist, silence []time.Duration
			for r := 0; r < rounds; r++ {
				id := fmt.Sprintf("c%d", r)
				c := tc.start(id, nodeOpts{mutate: prof.mutate})
				tc.join(c, tc.seed("s1"), 30*time.Second)
				waitFor(t, 20*time.Second, "lease", func() bool { return c.LeaseRemaining() > 0 })
				// Let a few renewals pass so the crash lands at a random
				// point of the renewal interval.
				time.Sleep(time.Duration(1000+r*237) * time.Millisecond)
				leader := tc.waitLeader()
				before := gather(t, leader.Registry())
				t0 := time.Now()
				tc.stop(id)
				var tDetect, tCommit time.Time
				deadline := time.Now().Add(60 * time.Second)
				for tCommit.IsZero() && time.Now().Before(deadline) {
					if g, ok := leader.gossip.Member(id); tDetect.IsZero() && ok && g.Status == gossip.StatusFailed {
						tDetect = time.Now()
					}
					if m, ok := leader.fsm.View().Member(id); ok && m.Status == consensus.StatusFailed {
						tCommit = time.Now()
					}
					time.Sleep(2 * time.Millisecond)
				}
				if tCommit.IsZero() {
					t.Fatalf("%s not committed Failed", id)
				}
				if tDetect.IsZero() {
					tDetect = tCommit
				}
				var after families
				waitFor(t, 5*time.Second, "histogram observation", func() bool {
					after = gather(t, leader.Registry())
					return after.histCount("kelpie_failure_detection_seconds") > before.histCount("kelpie_failure_detection_seconds")
				})
				detect = append(detect, tDetect.Sub(t0))
				commit = append(commit, tCommit.Sub(tDetect))
				total = append(total, tCommit.Sub(t0))
				hist = append(hist, time.Duration((after.histSum("kelpie_failure_detection_seconds")-before.histSum("kelpie_failure_detection_seconds"))*float64(time.Second)))
				silence = append(silence, time.Duration((after.histSum("kelpie_failure_detection_since_last_lease_seconds")-before.histSum("kelpie_failure_detection_since_last_lease_seconds"))*float64(time.Second)))
			}
			t.Logf("%s, %d crashes of a client, seconds:", prof.name, rounds)
			t.Logf("  crash → leader's gossip says failed:        %s", fmtSeconds(detect))
			t.Logf("  gossip failed → committed Failed (polled):  %s", fmtSeconds(commit))
			t.Logf("  crash → committed Failed:                   %s", fmtSeconds(total))
			t.Logf("  kelpie_failure_detection_seconds samples:   %s", fmtSeconds(hist))
			t.Logf("  ..._since_last_lease_seconds samples:       %s", fmtSeconds(silence))
			slices.Sort(total)
			t.Logf("  crash → committed: min %.3f max %.3f", total[0].Seconds(), total[len(total)-1].Seconds())
		})
	}
}
