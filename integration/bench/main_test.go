// Package bench holds the process-level benchmarks of `make bench`: failure
// detection, actor failover and false positives, measured on real kelpied
// processes inside a private network namespace (so every node has its own
// 127.0.0.N and faults can be injected with nftables). They run only with
// KELPIE_BENCH=1 and write their figures with internal/benchrec.
package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelpie/cluster/integration/nemesis"
)

// envBench enables these benchmarks (they take minutes and need root).
const envBench = "KELPIE_BENCH"

var kelpiedBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Getenv(envBench) != "1" {
		return m.Run() // every test skips
	}
	dir, err := os.MkdirTemp("", "kelpie-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if kelpiedBin, err = nemesis.BuildCmd(dir, "github.com/kelpie/cluster/cmd/kelpied", "bench"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return m.Run()
}

// enter skips t unless KELPIE_BENCH=1, then moves it into a private network
// namespace (nemesis.PrivateNetns): it returns true in the re-executed child,
// which runs the benchmark; the caller returns at once on false.
func enter(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envBench) != "1" {
		t.Skipf("process-level benchmark: set %s=1 (make bench does)", envBench)
	}
	return nemesis.PrivateNetns(t)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}
