package metrics

import (
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkGoMetricsBridge is the cost raft pays per timer sample with the
// bridge installed.
func BenchmarkGoMetricsBridge(b *testing.B) {
	if err := InstallGoMetrics(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	key := []string{"raft", "commitTime"}
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		gometrics.MeasureSince(key, start)
	}
}
