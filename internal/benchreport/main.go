// Command benchreport turns the records one `make bench` run wrote (JSON
// lines, internal/benchrec) into BENCHMARKS.md and its machine-readable twin
// BENCHMARKS.json, and prints the summary table. Text between the
// "<!-- notes -->" and "<!-- /notes -->" markers of an existing BENCHMARKS.md
// is kept: that is where people explain the figures.
//
// With -base (an earlier BENCHMARKS.json), the figures (section, metric and
// conditions) this run did not measure are carried over from that report, each marked
// with the run it comes from, so that re-running one part (make bench
// BENCH_PARTS=bench-place BENCH_BASE=BENCHMARKS.json) does not drop the
// others.
//
//	go run ./internal/benchreport -in bench.jsonl -md BENCHMARKS.md -json BENCHMARKS.json -cmd "make bench"
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelpie/cluster/internal/benchrec"
)

// Machine describes where the figures were measured.
type Machine struct {
	Cores     int    `json:"cores"`
	MemoryGiB string `json:"memory_gib"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	OS        string `json:"os"`
}

// Report is BENCHMARKS.json.
type Report struct {
	Date    string            `json:"date"`
	Command string            `json:"command"`
	Machine Machine           `json:"machine"`
	Records []benchrec.Record `json:"records"`
	// Carried lists the figures taken over from an earlier report (-base)
	// because this run did not measure them.
	Carried []Carried `json:"carried,omitempty"`
}

// Carried is a figure (a metric under given conditions) of an earlier run
// kept in this report.
type Carried struct {
	Section string `json:"section"`
	Metric  string `json:"metric"`
	Params  string `json:"params,omitempty"`
	Date    string `json:"date"`    // of the run that measured it
	Command string `json:"command"` // that run's command
}

// sectionOrder is the order of sections in the report.
var sectionOrder = []string{"detection", "failover", "placement", "http", "lookup", "migration", "scale"}

const notesStart, notesEnd = "<!-- notes -->", "<!-- /notes -->"

func main() {
	in := flag.String("in", "", "JSON-lines file of records (required)")
	md := flag.String("md", "BENCHMARKS.md", "Markdown report to write")
	js := flag.String("json", "BENCHMARKS.json", "machine-readable report to write")
	command := flag.String("cmd", "make bench", "the command that produced the records, as it is to be quoted")
	base := flag.String("base", "", "earlier BENCHMARKS.json whose sections this run did not measure are carried over")
	flag.Parse()
	if err := run(*in, *base, *md, *js, *command, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(in, base, md, js, command string, out io.Writer) error {
	if in == "" {
		return errors.New("-in is required")
	}
	recs, err := readRecords(in)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s holds no records: did the benchmarks run?", in)
	}
	rep := Report{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Command: command, Machine: machine(), Records: recs}
	if base != "" {
		if err := carryOver(&rep, base); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return err
	}
	notes := keptNotes(md)
	if err := os.WriteFile(md, []byte(markdown(rep, notes, md, js)), 0o644); err != nil {
		return err
	}
	printTable(out, recs)
	return nil
}

// carryOver adds to rep the figures (section, metric and conditions) of the
// report at path that rep has no records for. The base must come from the same kind of machine: only
// same-run ratios are meaningful, so a carried section is always marked.
func carryOver(rep *Report, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var old Report
	if err := json.Unmarshal(b, &old); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if old.Machine.Cores != rep.Machine.Cores || old.Machine.CPU != rep.Machine.CPU {
		return fmt.Errorf("%s was measured on another machine (%d cores, %s); not carrying its figures over", path, old.Machine.Cores, old.Machine.CPU)
	}
	type key struct{ section, metric, params string }
	measured := map[key]bool{}
	for _, r := range rep.Records {
		measured[key{r.Section, r.Metric, identity(r)}] = true
	}
	carried := map[key]bool{}
	for _, r := range old.Records {
		k := key{r.Section, r.Metric, identity(r)}
		if measured[k] {
			continue
		}
		rep.Records = append(rep.Records, r)
		if !carried[k] {
			carried[k] = true
			c := Carried{Section: r.Section, Metric: r.Metric, Params: params(r), Date: old.Date, Command: old.Command}
			for _, oc := range old.Carried { // carried twice: keep the origin
				if oc.Section == r.Section && oc.Metric == r.Metric && oc.Params == c.Params {
					c = oc
				}
			}
			rep.Carried = append(rep.Carried, c)
		}
	}
	return nil
}

func readRecords(path string) ([]benchrec.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []benchrec.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r benchrec.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				m.MemoryGiB = fmt.Sprintf("%.1f", float64(kb)/(1<<20))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	// The toolchain that built the benchmarks, if it differs from ours.
	if b, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.Go = strings.TrimSpace(string(b))
	}
	return m
}

// keptNotes returns the notes block of an existing report (markers
// included), or a fresh empty one.
func keptNotes(md string) string {
	b, err := os.ReadFile(md)
	if err == nil {
		s := string(b)
		if i := strings.Index(s, notesStart); i >= 0 {
			if j := strings.Index(s[i:], notesEnd); j >= 0 {
				return s[i : i+j+len(notesEnd)]
			}
		}
	}
	return notesStart + "\n_No notes yet._\n" + notesEnd
}

// derivedParams are conditions a run derives from its own figures (the
// half-peak load is half of that run's peak): they do not tell figures
// apart when carrying over.
var derivedParams = map[string]bool{"rate_per_s": true}

// identity is params(r) without the derived conditions.
func identity(r benchrec.Record) string {
	var parts []string
	for _, p := range strings.Fields(params(r)) {
		if k, _, _ := strings.Cut(p, "="); !derivedParams[k] {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

func params(r benchrec.Record) string {
	keys := make([]string, 0, len(r.Params))
	for k := range r.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+r.Params[k])
	}
	return strings.Join(parts, " ")
}

func value(r benchrec.Record) string {
	v := r.Value
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func verdict(r benchrec.Record) string {
	if r.Target == "" {
		return ""
	}
	switch {
	case r.Pass == nil:
		return "target " + r.Target
	case *r.Pass:
		return "meets " + r.Target
	}
	return "**misses** " + r.Target
}

func bySection(recs []benchrec.Record) map[string][]benchrec.Record {
	m := map[string][]benchrec.Record{}
	for _, r := range recs {
		m[r.Section] = append(m[r.Section], r)
	}
	return m
}

func sections(m map[string][]benchrec.Record) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range sectionOrder {
		if len(m[s]) > 0 {
			out, seen[s] = append(out, s), true
		}
	}
	var rest []string
	for s := range m {
		if !seen[s] {
			rest = append(rest, s)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func markdown(rep Report, notes, mdPath, jsonPath string) string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Generated by `%s` on %s. Do not edit by hand outside the notes block: the next run rewrites it. ", rep.Command, rep.Date)
	rel := jsonPath
	if r, err := filepath.Rel(filepath.Dir(mdPath), jsonPath); err == nil {
		rel = r
	}
	fmt.Fprintf(&b, "Raw records: [`%s`](%s).\n\n", rel, rel)
	fmt.Fprintf(&b, "Machine: %d cores (%s), %s GiB memory, %s, kernel %s; %s.\n\n", m.Cores, m.CPU, m.MemoryGiB, m.OS, m.Kernel, m.Go)
	fmt.Fprintf(&b, "## Targets\n\n| figure | conditions | measured | target |\n|---|---|---|---|\n")
	for _, r := range rep.Records {
		if r.Target == "" {
			continue
		}
		fmt.Fprintf(&b, "| %s/%s | %s | %s %s | %s |\n", r.Section, r.Metric, params(r), value(r), r.Unit, verdict(r))
	}
	fmt.Fprintf(&b, "\n## Notes\n\n%s\n", notes)
	bs := bySection(rep.Records)
	for _, s := range sections(bs) {
		fmt.Fprintf(&b, "\n## %s\n\n", strings.ToUpper(s[:1])+s[1:])
		var carried []string
		for _, c := range rep.Carried {
			if c.Section == s {
				carried = append(carried, fmt.Sprintf("- `%s` (%s): run of %s, `%s`\n", c.Metric, c.Params, c.Date, c.Command))
			}
		}
		if len(carried) > 0 {
			fmt.Fprintf(&b, "Carried over from an earlier run (this run did not measure them):\n\n%s\n", strings.Join(carried, ""))
		}
		fmt.Fprintf(&b, "| metric | conditions | value | samples | target |\n|---|---|---|---|---|\n")
		methods := []string{}
		seenMethod := map[string]bool{}
		for _, r := range bs[s] {
			samples := ""
			if r.Samples > 0 {
				samples = fmt.Sprint(r.Samples)
			}
			fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %s |\n", r.Metric, params(r), value(r), r.Unit, samples, verdict(r))
			if r.Method != "" && !seenMethod[r.Method] {
				seenMethod[r.Method] = true
				methods = append(methods, r.Method)
			}
		}
		if len(methods) > 0 {
			fmt.Fprintf(&b, "\nMethod:\n\n")
			for _, mt := range methods {
				fmt.Fprintf(&b, "- %s\n", mt)
			}
		}
	}
	return b.String()
}

func printTable(out io.Writer, recs []benchrec.Record) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tMETRIC\tCONDITIONS\tVALUE\tUNIT\tTARGET")
	bs := bySection(recs)
	for _, s := range sections(bs) {
		for _, r := range bs[s] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Section, r.Metric, params(r), value(r), r.Unit, strings.ReplaceAll(verdict(r), "**", ""))
		}
	}
	tw.Flush()
}
