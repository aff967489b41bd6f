package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kelpie/cluster/internal/benchrec"
)

// Re-running one part replaces its figures and carries the others over from
// the earlier report, marked as carried.
func TestCarryOverKeepsUnmeasuredSections(t *testing.T) {
	dir := t.TempDir()
	base := Report{Date: "2026-01-01 00:00 UTC", Command: "make bench", Machine: machine(), Records: []benchrec.Record{
		{Section: "placement", Metric: "place_ops_per_s", Value: 1},
		{Section: "scale", Metric: "all_active_s", Value: 99},
		{Section: "placement", Metric: "lookup_ns", Value: 50},
		{Section: "placement", Metric: "place_half_peak_p99", Value: 400, Params: map[string]string{"rate_per_s": "60000"}},
	}}
	b, _ := json.Marshal(base)
	basePath := filepath.Join(dir, "base.json")
	if err := os.WriteFile(basePath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "new.jsonl")
	line, _ := json.Marshal(benchrec.Record{Section: "placement", Metric: "place_ops_per_s", Value: 2})
	line2, _ := json.Marshal(benchrec.Record{Section: "placement", Metric: "place_half_peak_p99", Value: 300, Params: map[string]string{"rate_per_s": "70000"}})
	if err := os.WriteFile(in, append(append(append(line, '\n'), line2...), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	md, js := filepath.Join(dir, "B.md"), filepath.Join(dir, "B.json")
	if err := run(in, basePath, md, js, "make bench BENCH_PARTS=bench-place", io.Discard); err != nil {
		t.Fatal(err)
	}
	var got Report
	raw, _ := os.ReadFile(js)
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, r := range got.Records {
		vals[r.Metric] += r.Value
	}
	if len(got.Records) != 4 || vals["place_ops_per_s"] != 2 || vals["all_active_s"] != 99 || vals["lookup_ns"] != 50 || vals["place_half_peak_p99"] != 300 {
		t.Fatalf("records %+v: want the new placement figure and the old others", got.Records)
	}
	if len(got.Carried) != 2 || got.Carried[0].Metric != "all_active_s" || got.Carried[0].Date != base.Date {
		t.Fatalf("carried %+v", got.Carried)
	}
	text, _ := os.ReadFile(md)
	if !strings.Contains(string(text), "- `all_active_s` (): run of 2026-01-01 00:00 UTC") {
		t.Fatalf("report does not mark the carried section:\n%s", text)
	}

	// A base from another machine is refused rather than mixed in.
	base.Machine.Cores++
	b, _ = json.Marshal(base)
	os.WriteFile(basePath, b, 0o644)
	if err := run(in, basePath, md, js, "x", io.Discard); err == nil {
		t.Fatal("a base from another machine was accepted")
	}
}
