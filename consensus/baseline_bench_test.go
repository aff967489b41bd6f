package consensus

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRaftBaseline is the comparison for kelpie's placement throughput:
// (a) one 64-byte entry per operation at the given concurrency; (b) the
// engine's limit, 100 operations packed per entry, 256 callers. Reported as
// ops/s (operations, not entries). The root package's TestBenchPlacement
// measures the same Baseline in the same run as Place (make bench-place).
func BenchmarkRaftBaseline(b *testing.B) {
	run := func(b *testing.B, callers, opsPerEntry int) {
		base, err := StartBaseline(b.TempDir(), []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(base.Close)
		entries := (b.N + opsPerEntry - 1) / opsPerEntry
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(entries) {
					if err := base.Apply(opsPerEntry, 10*time.Second); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(entries*opsPerEntry)/time.Since(start).Seconds(), "ops/s")
	}
	for _, c := range []int{1, 16, 64, 256, 4096} {
		b.Run(fmt.Sprintf("a-entry-per-op/inflight=%d", c), func(b *testing.B) { run(b, c, 1) })
	}
	b.Run("b-100-ops-per-entry/inflight=256", func(b *testing.B) { run(b, 256, 100) })
}
