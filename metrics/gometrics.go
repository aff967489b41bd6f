package metrics

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// The go-metrics bridge.
//
// hashicorp/raft, serf, memberlist and raft-autopilot report through the
// process-global go-metrics handler (gometrics.NewGlobal): there is one per
// process, whatever number of nodes or registries the process has. The
// bridge installs, once per process, a global handler whose sink feeds
// go-metrics' Prometheus sink through a renaming layer, and registers that
// sink (one shared collector) on every registry passed to InstallGoMetrics.
//
// Renaming, so that the bridged metrics pass promlint: every key part is
// snake-cased ("raft.commitTime" → raft_commit_time), characters outside
// [a-z0-9_] become "_", and counters get "_total" (serf.member.join →
// serf_member_join_total). A trailing abbreviated time unit becomes
// "_seconds" with the value converted (serf.coordinate.adjustment-ms →
// serf_coordinate_adjustment_seconds). No service prefix and no hostname
// (EnableHostname is false): names are the libraries' usual ones. A few
// gossip event counters and the Lifeguard health gauge are declared up front
// at zero (bridgedCounters, bridgedGauges). Timers arrive as summaries
// in milliseconds (go-metrics' TimerGranularity), as in Consul or Nomad;
// dashboards should prefer the kelpie_* histograms, which are aggregatable
// across nodes. Bridged series never expire: gauges that libraries set only on
// change stay visible, and the label sets (raft peers) are bounded by the
// servers ever seen. A sample whose Prometheus name would collide with a
// metric of another type is dropped and counted in
// kelpie_gometrics_dropped_total, because such a collision would make every
// scrape of the registry fail.

var bridge struct {
	once sync.Once
	sink *gmSink
	err  error
}

// InstallGoMetrics bridges the process-global go-metrics handler into reg
// (raft_*, serf_*, memberlist_*, autopilot_* metrics).
//
// The first call in a process replaces the global go-metrics handler
// (gometrics.NewGlobal) with the bridge; every call registers the bridge's
// collector on reg. Calling it again with the same registry is a no-op, so
// it is safe to call once per registry, from any goroutine. With several
// registries (several nodes in one process, as in tests) each one exposes
// the same process-wide figures. The library never calls it itself: it is
// the embedding application's decision (kelpied calls it at start-up),
// because it replaces any go-metrics sink the application set up.
func InstallGoMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return errors.New("metrics: InstallGoMetrics needs a registerer")
	}
	bridge.once.Do(func() {
		bridge.sink, bridge.err = newGMSink()
		if bridge.err != nil {
			return
		}
		conf := gometrics.DefaultConfig("")
		conf.HostName = ""
		conf.EnableHostname = false
		conf.EnableHostnameLabel = false
		conf.EnableServiceLabel = false
		conf.EnableTypePrefix = false
		conf.EnableRuntimeMetrics = false // the Go collector covers the runtime
		_, bridge.err = gometrics.NewGlobal(conf, bridge.sink)
	})
	if bridge.err != nil {
		return bridge.err
	}
	// The marker makes installation idempotent per registry: the bridge
	// itself is an unchecked collector (its metrics are not known in
	// advance), which a registry would accept twice.
	if err := reg.Register(bridgeMarker{}); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return err
	}
	if err := reg.Register(bridge.sink); err != nil {
		reg.Unregister(bridgeMarker{})
		return err
	}
	return nil
}

// bridgeMarker is registered next to the bridge; it reports no metric.
type bridgeMarker struct{}

var bridgeMarkerDesc = prometheus.NewDesc("kelpie_gometrics_bridge_installed",
	"Marker of the go-metrics bridge on this registry (never reported).", nil, nil)

func (bridgeMarker) Describe(ch chan<- *prometheus.Desc) { ch <- bridgeMarkerDesc }
func (bridgeMarker) Collect(chan<- prometheus.Metric)    {}

type metricKind byte

const (
	kindGauge   metricKind = 'g'
	kindCounter metricKind = 'c'
	kindSummary metricKind = 's'
)

// gmSink is a go-metrics sink that renames keys and forwards to go-metrics'
// Prometheus sink. It is also the Prometheus collector of the bridge.
type gmSink struct {
	inner   *gmprom.PrometheusSink
	dropped atomic.Uint64

	names sync.Map // kind + raw key → promKey (name "" = dropped)
	mu    sync.Mutex
	kinds map[string]metricKind // Prometheus name → kind; under mu
}

// Bridged metrics declared up front, at zero, with real help text: the
// gossip-layer counters and gauge that the dashboard uses and that the
// libraries report only when something happens or on a slow timer (every
// node gossips, so they are meaningful on every node). Everything else
// appears when first reported.
var (
	bridgedGauges = map[string]string{
		"memberlist_health_score": "memberlist Lifeguard local health score (0 = healthy; higher means this node is slow to answer probes and scales its own timeouts).",
	}
	bridgedCounters = map[string]string{
		"memberlist_msg_suspect_total":      "memberlist suspect messages this node processed.",
		"memberlist_msg_dead_total":         "memberlist dead messages this node processed.",
		"memberlist_degraded_probe_total":   "memberlist probe rounds run with a health-scaled (longer) interval.",
		"memberlist_degraded_timeout_total": "memberlist suspicion timeouts shortened by independent confirmations.",
		"memberlist_udp_sent_total":         "Bytes memberlist sent over UDP (probes, gossip).",
		"memberlist_udp_received_total":     "Bytes memberlist received over UDP.",
		"memberlist_tcp_sent_total":         "Bytes memberlist sent over TCP (push/pull state syncs, joins).",
		"serf_member_join_total":            "serf member join events on this node.",
		"serf_member_failed_total":          "serf member failed events on this node.",
		"serf_member_left_total":            "serf member left events on this node.",
		"serf_member_flap_total":            "serf members that failed and came back within the flap window.",
		"serf_member_update_total":          "serf member tag updates on this node.",
	}
)

func newGMSink() (*gmSink, error) {
	opts := gmprom.PrometheusOpts{
		// Registered on a private registry only: it is collected through
		// gmSink, never through prometheus.DefaultRegisterer.
		Registerer: prometheus.NewRegistry(),
		Expiration: 0,
		Name:       "kelpie_gometrics_bridge",
	}
	kinds := map[string]metricKind{}
	for name, help := range bridgedGauges {
		opts.GaugeDefinitions = append(opts.GaugeDefinitions, gmprom.GaugeDefinition{Name: []string{name}, Help: help})
		kinds[name] = kindGauge
	}
	for name, help := range bridgedCounters {
		opts.CounterDefinitions = append(opts.CounterDefinitions, gmprom.CounterDefinition{Name: []string{name}, Help: help})
		kinds[name] = kindCounter
	}
	inner, err := gmprom.NewPrometheusSinkFrom(opts)
	if err != nil {
		return nil, err
	}
	return &gmSink{inner: inner, kinds: kinds}, nil
}

// Describe implements prometheus.Collector. It describes nothing: the
// bridged metrics appear as the libraries report them (an unchecked
// collector).
func (s *gmSink) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (s *gmSink) Collect(ch chan<- prometheus.Metric) {
	s.inner.Collect(ch)
	ch <- prometheus.MustNewConstMetric(bridgeDroppedDesc, prometheus.CounterValue, float64(s.dropped.Load()))
}

// promKey is a renamed key: the Prometheus name and the factor that turns
// the value into the unit the name says.
type promKey struct {
	name  string
	scale float64
}

// unitSuffixes are abbreviated time units some keys end with
// (serf.coordinate.adjustment-ms): renamed to base units, values converted.
var unitSuffixes = map[string]float64{"_ms": 1e-3, "_us": 1e-6, "_ns": 1e-9}

// name returns the Prometheus name for a key of kind k, or "" if it must be
// dropped (it would collide with a metric of another type).
func (s *gmSink) name(k metricKind, key []string) promKey {
	raw := string(k) + strings.Join(key, "\x00")
	if v, ok := s.names.Load(raw); ok {
		return v.(promKey)
	}
	pk := promKey{name: promName(key, false), scale: 1}
	if k != kindCounter {
		for suf, f := range unitSuffixes {
			if base, ok := strings.CutSuffix(pk.name, suf); ok {
				pk = promKey{name: base + "_seconds", scale: f}
			}
		}
	} else if !strings.HasSuffix(pk.name, "_total") {
		pk.name += "_total"
	}
	if !s.claim(pk.name, k) {
		pk.name = ""
	}
	s.names.Store(raw, pk)
	return pk
}

// claim reserves name for kind k; false if the name (or, for summaries,
// the _count/_sum series it implies) is taken by another type.
func (s *gmSink) claim(name string, k metricKind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if have, ok := s.kinds[name]; ok {
		return have == k
	}
	if k == kindSummary {
		if _, ok := s.kinds[name+"_count"]; ok {
			return false
		}
		if _, ok := s.kinds[name+"_sum"]; ok {
			return false
		}
	}
	for _, suf := range []string{"_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suf); ok && s.kinds[base] == kindSummary {
			return false
		}
	}
	if strings.HasPrefix(name, "kelpie_") {
		return false // our own namespace
	}
	s.kinds[name] = k
	return true
}

func (s *gmSink) labels(ls []gometrics.Label) []gometrics.Label {
	if len(ls) == 0 {
		return nil
	}
	out := make([]gometrics.Label, len(ls))
	for i, l := range ls {
		out[i] = gometrics.Label{Name: promName([]string{l.Name}, false), Value: l.Value}
	}
	return out
}

// SetGauge implements gometrics.MetricSink.
func (s *gmSink) SetGauge(key []string, val float32) { s.SetGaugeWithLabels(key, val, nil) }

// SetGaugeWithLabels implements gometrics.MetricSink.
func (s *gmSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), labels)
}

// SetPrecisionGauge implements gometrics.PrecisionGaugeMetricSink.
func (s *gmSink) SetPrecisionGauge(key []string, val float64) {
	s.SetPrecisionGaugeWithLabels(key, val, nil)
}

// SetPrecisionGaugeWithLabels implements gometrics.PrecisionGaugeMetricSink.
func (s *gmSink) SetPrecisionGaugeWithLabels(key []string, val float64, labels []gometrics.Label) {
	if k := s.name(kindGauge, key); k.name != "" {
		s.inner.SetPrecisionGaugeWithLabels([]string{k.name}, val*k.scale, s.labels(labels))
		return
	}
	s.dropped.Add(1)
}

// EmitKey implements gometrics.MetricSink (not supported by Prometheus).
func (s *gmSink) EmitKey([]string, float32) {}

// IncrCounter implements gometrics.MetricSink.
func (s *gmSink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

// IncrCounterWithLabels implements gometrics.MetricSink.
func (s *gmSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if k := s.name(kindCounter, key); k.name != "" && val >= 0 {
		s.inner.IncrCounterWithLabels([]string{k.name}, val, s.labels(labels))
		return
	}
	s.dropped.Add(1)
}

// AddSample implements gometrics.MetricSink.
func (s *gmSink) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

// AddSampleWithLabels implements gometrics.MetricSink.
func (s *gmSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	if k := s.name(kindSummary, key); k.name != "" {
		s.inner.AddSampleWithLabels([]string{k.name}, float32(float64(val)*k.scale), s.labels(labels))
		return
	}
	s.dropped.Add(1)
}

// promName turns a go-metrics key into a lint-clean Prometheus name: parts
// joined by "_", each snake-cased (camelCase and acronyms split:
// "appendEntries" → "append_entries", "RPCTime" → "rpc_time"), anything
// outside [a-z0-9_] replaced by "_", runs of "_" collapsed, and "_total"
// appended for counters.
func promName(key []string, counter bool) string {
	var b strings.Builder
	for _, part := range key {
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		r := []rune(part)
		for i, c := range r {
			switch {
			case c >= 'A' && c <= 'Z':
				if i > 0 {
					prev := r[i-1]
					nextLower := i+1 < len(r) && r[i+1] >= 'a' && r[i+1] <= 'z'
					if prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9' || prev >= 'A' && prev <= 'Z' && nextLower {
						b.WriteByte('_')
					}
				}
				b.WriteRune(c + ('a' - 'A'))
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
				b.WriteRune(c)
			default:
				b.WriteByte('_')
			}
		}
	}
	out := make([]byte, 0, b.Len())
	for _, c := range []byte(b.String()) {
		if c == '_' && (len(out) == 0 || out[len(out)-1] == '_') {
			continue
		}
		out = append(out, c)
	}
	name := strings.TrimSuffix(string(out), "_")
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "x_" + name
	}
	if counter && !strings.HasSuffix(name, "_total") {
		name += "_total"
	}
	return name
}

// Compile-time checks.
var (
	_ gometrics.MetricSink               = (*gmSink)(nil)
	_ gometrics.PrecisionGaugeMetricSink = (*gmSink)(nil)
	_ prometheus.Collector               = (*gmSink)(nil)
)
