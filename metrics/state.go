package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector reads the node's live state from a Source at scrape time.
// Metrics that only make sense on servers (Raft, voters, the placement
// replica) are left out on clients instead of being reported as zero, and
// kelpie_voters_healthy only comes from the leader, which alone runs voter
// management. The descriptors are declared in New.
type stateCollector struct {
	src Source

	isLeader, term, commitIndex, appliedIndex            *prometheus.Desc
	voters, votersReachable, votersHealthy, votersTarget *prometheus.Desc
	gossipMembers, gossipDropped                         *prometheus.Desc
	placements, nodePlacements, localActors              *prometheus.Desc
	leaseRemaining, leaseFenced                          *prometheus.Desc
	leaseDuration, leaseMargin, leaseRenewInterval       *prometheus.Desc
}

func (c *stateCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.isLeader, c.term, c.commitIndex, c.appliedIndex,
		c.voters, c.votersReachable, c.votersHealthy, c.votersTarget,
		c.gossipMembers, c.gossipDropped,
		c.placements, c.nodePlacements, c.localActors,
		c.leaseRemaining, c.leaseFenced, c.leaseDuration, c.leaseMargin, c.leaseRenewInterval,
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.isLeader, b2f(c.src.MetricsIsLeader()))
	if term, commit, applied, ok := c.src.MetricsRaft(); ok {
		gauge(c.term, float64(term))
		gauge(c.commitIndex, float64(commit))
		gauge(c.appliedIndex, float64(applied))
	}
	if v, ok := c.src.MetricsVoters(); ok {
		gauge(c.voters, float64(v.Total))
		gauge(c.votersReachable, float64(v.Reachable))
		gauge(c.votersTarget, float64(v.Target))
		if v.HealthKnown {
			gauge(c.votersHealthy, float64(v.Healthy))
		}
	}

	byStatus := c.src.MetricsGossipMembers()
	for _, s := range GossipStatuses {
		gauge(c.gossipMembers, float64(byStatus[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(c.gossipDropped, prometheus.CounterValue, float64(c.src.MetricsGossipDropped()))

	if byNode, ok := c.src.MetricsPlacements(); ok {
		nodes := make([]string, 0, len(byNode))
		total := 0
		for n, k := range byNode {
			nodes = append(nodes, n)
			total += k
		}
		sort.Strings(nodes)
		gauge(c.placements, float64(total))
		for _, n := range nodes {
			gauge(c.nodePlacements, float64(byNode[n]), n)
		}
	}
	gauge(c.localActors, float64(c.src.MetricsLocalActors()))

	l := c.src.MetricsLease()
	gauge(c.leaseRemaining, c.src.MetricsLeaseRemaining().Seconds())
	gauge(c.leaseFenced, b2f(l.Fenced))
	gauge(c.leaseDuration, l.Duration.Seconds())
	gauge(c.leaseMargin, l.Margin.Seconds())
	gauge(c.leaseRenewInterval, l.RenewInterval.Seconds())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
