package cluster

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Helpers for the metrics tests: scraping /metrics over HTTP and reading
// values out of the parsed families.

// families is one scrape: metric family name → family.
type families map[string]*dto.MetricFamily

// scrape GETs http://<node>/metrics and parses the text exposition.
func scrape(t *testing.T, n *Node) families {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain") // the text format, whatever the server prefers
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", n.ID(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: HTTP %d", n.ID(), resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: parse: %v", n.ID(), err)
	}
	return mfs
}

// gather reads a registry directly (no HTTP), for tight polling loops.
func gather(t *testing.T, g prometheus.Gatherer) families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := families{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// metric finds the series of family name whose labels include want
// ("k=v" pairs); ok is false if there is none.
func (f families) metric(name string, want ...string) (*dto.Metric, bool) {
	mf, ok := f[name]
	if !ok {
		return nil, false
	}
next:
	for _, m := range mf.GetMetric() {
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

// value is the value of a counter, gauge or untyped series (0 if absent).
func (f families) value(name string, want ...string) float64 {
	m, ok := f.metric(name, want...)
	if !ok {
		return 0
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// has reports whether the family exists with at least one series.
func (f families) has(name string) bool {
	mf, ok := f[name]
	return ok && len(mf.GetMetric()) > 0
}

// histCount and histSum read a histogram's sample count and sum.
func (f families) histCount(name string) uint64 {
	m, ok := f.metric(name)
	if !ok || m.Histogram == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func (f families) histSum(name string) float64 {
	m, ok := f.metric(name)
	if !ok || m.Histogram == nil {
		return 0
	}
	return m.GetHistogram().GetSampleSum()
}

// names lists the family names, sorted.
func (f families) names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// exposes reports whether a scrape exposes the series a PromQL selector name
// refers to: the family itself, or the _bucket/_count/_sum series of a
// histogram or summary family.
func (f families) exposes(name string) bool {
	if f.has(name) {
		return true
	}
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			mf, ok := f[base]
			if !ok {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suf != "_bucket"
			}
		}
	}
	return false
}

// union merges scrapes (the first one seen of each family wins).
func union(fs ...families) families {
	out := families{}
	for _, f := range fs {
		for n, mf := range f {
			if _, ok := out[n]; !ok {
				out[n] = mf
			}
		}
	}
	return out
}

func fmtSeconds(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.3f", d.Seconds())
	}
	return strings.Join(parts, " ")
}
