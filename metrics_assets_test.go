package cluster

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// Reading the metric names out of the shipped dashboard and alert rules.
// PromQL is not parsed: string literals are blanked and every identifier in
// one of the namespaces the repo exposes (kelpie_* and the bridged raft_*,
// serf_*, memberlist_*, autopilot_*) counts as a metric name. metrics/ has
// the structural checks of both files.

var (
	promqlString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlName   = regexp.MustCompile(`\b(?:kelpie|raft|serf|memberlist|autopilot)_[a-zA-Z0-9_]+\b`)
)

// exprMetricNames returns the metric names a PromQL expression uses.
func exprMetricNames(expr string) []string {
	return promqlName.FindAllString(promqlString.ReplaceAllString(expr, `""`), -1)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dashboardMetricNames reads a Grafana dashboard and returns the metric
// names of every panel query and template variable query.
func dashboardMetricNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	names := map[string]bool{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				for _, n := range exprMetricNames(v) {
					names[n] = true
				}
			}
		}
	}
	walk("", d)
	return sortedSet(names)
}

// alertRules is the Prometheus rule-file format.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertMetricNames reads a rule file and returns the metric names its
// expressions use.
func alertMetricNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf alertRules
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, n := range exprMetricNames(r.Expr) {
				names[n] = true
			}
		}
	}
	return sortedSet(names)
}
