// Package benchrec is the record format every part of `make bench` writes:
// one JSON object per line, appended to the file named by $KELPIE_BENCH_OUT.
// The report generator (internal/benchreport) turns the records of one run
// into BENCHMARKS.md and its machine-readable twin.
package benchrec

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// EnvOut names the file records are appended to. Unset: Emit only logs.
const EnvOut = "KELPIE_BENCH_OUT"

// Record is one measured figure.
type Record struct {
	// Section groups figures in the report: "detection", "failover",
	// "placement", "lookup", "migration", "scale", "http".
	Section string `json:"section"`
	// Metric names the figure within its section, e.g. "crash_to_failed_p99".
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	// Unit of Value: "s", "ms", "ns/op", "allocs/op", "ops/s", "count",
	// "MiB", "ratio", ...
	Unit string `json:"unit"`
	// Params are the conditions (nodes, profile, inflight, size...).
	Params map[string]string `json:"params,omitempty"`
	// Target is the target as text ("<= 3 s"); empty if none.
	Target string `json:"target,omitempty"`
	// Pass is set when there is a target: whether Value meets it.
	Pass *bool `json:"pass,omitempty"`
	// Method says in one line how the figure was measured.
	Method string `json:"method,omitempty"`
	// Samples is the number of trials or operations behind the figure.
	Samples int       `json:"samples,omitempty"`
	At      time.Time `json:"at"`
}

// Bool returns a pointer to b (for Record.Pass).
func Bool(b bool) *bool { return &b }

var mu sync.Mutex

// Emit appends r to $KELPIE_BENCH_OUT (if set) and returns r as one line of
// text for logs.
func Emit(r Record) (string, error) {
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	line, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	path := os.Getenv(EnvOut)
	if path != "" {
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return "", err
		}
		if _, err := f.Write(append(line, '\n')); err != nil {
			f.Close()
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
	}
	return r.String(), nil
}

// String renders r for a log line.
func (r Record) String() string {
	keys := make([]string, 0, len(r.Params))
	for k := range r.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ps := ""
	for _, k := range keys {
		ps += " " + k + "=" + r.Params[k]
	}
	s := fmt.Sprintf("%s/%s%s: %.4g %s", r.Section, r.Metric, ps, r.Value, r.Unit)
	if r.Target != "" {
		verdict := "?"
		if r.Pass != nil {
			verdict = map[bool]string{true: "meets", false: "MISSES"}[*r.Pass]
		}
		s += fmt.Sprintf(" (target %s: %s)", r.Target, verdict)
	}
	return s
}

// Percentile returns the p-th percentile (0..100) of xs by nearest rank;
// xs need not be sorted. Zero for no samples.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(p/100*float64(len(s)) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}
