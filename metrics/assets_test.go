package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	yaml "go.yaml.in/yaml/v3"
)

// Structural checks of the shipped dashboard and alert rules, and of the
// kelpie_* names they use against the declarations in this package. The
// root package checks every name (bridged ones too) against live nodes.

var (
	promqlString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlName   = regexp.MustCompile(`\b(?:kelpie|raft|serf|memberlist|autopilot)_[a-zA-Z0-9_]+\b`)
)

func exprNames(expr string) []string {
	return promqlName.FindAllString(promqlString.ReplaceAllString(expr, `""`), -1)
}

// declared returns the kelpie_* families this package declares (a leader
// server with every labelled vector touched, plus the bridge's own counter).
func declared(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, &fakeSource{leader: true, server: true})
	if err != nil {
		t.Fatal(err)
	}
	m.ViewChangeCommits.WithLabelValues("reconcile").Inc()
	out := map[string]dto.MetricType{"kelpie_gometrics_dropped_total": dto.MetricType_COUNTER}
	for name, mf := range gathered(t, reg) {
		out[name] = mf.GetType()
	}
	return out
}

// checkDeclared fails for a kelpie_* name that is not declared, and for
// histogram series used on a non-histogram.
func checkDeclared(t *testing.T, where string, names []string, decl map[string]dto.MetricType) {
	t.Helper()
	for _, n := range names {
		if !strings.HasPrefix(n, "kelpie_") {
			continue
		}
		if _, ok := decl[n]; ok {
			if decl[n] == dto.MetricType_HISTOGRAM {
				t.Errorf("%s: %s is a histogram: use its _bucket, _count or _sum series", where, n)
			}
			continue
		}
		ok := false
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if base, cut := strings.CutSuffix(n, suf); cut && decl[base] == dto.MetricType_HISTOGRAM {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: %s is not declared in metrics/", where, n)
		}
	}
}

type grafanaPanel struct {
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	ID         int                      `json:"id"`
	Datasource map[string]any           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("dashboards/kelpie.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Fatalf("no datasource template variable: %v", vars)
	}
	dsRef := func(ds map[string]any) bool { return ds["uid"] == "${datasource}" }
	decl := declared(t)
	ids := map[int]bool{}
	rows := map[string]bool{}
	var names []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			rows[p.Title] = true
			continue
		}
		if !dsRef(p.Datasource) {
			t.Errorf("panel %q does not use the $datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || !dsRef(tg.Datasource) {
				t.Errorf("panel %q: incomplete target %+v", p.Title, tg)
			}
			names = append(names, exprNames(tg.Expr)...)
		}
	}
	for _, a := range d.Annotations.List {
		names = append(names, exprNames(a.Expr)...)
	}
	for _, want := range []string{"Membership", "Leadership", "Failure detection", "Placement", "Leases", "Migration", "internals"} {
		found := false
		for r := range rows {
			found = found || strings.Contains(r, want)
		}
		if !found {
			t.Errorf("no row about %q (rows: %v)", want, rows)
		}
	}
	checkDeclared(t, "dashboard", names, decl)
	// Every declared metric is on the dashboard, except configuration
	// constants shown elsewhere.
	used := map[string]bool{}
	for _, n := range names {
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			n = strings.TrimSuffix(n, suf)
		}
		used[n] = true
	}
	for n := range decl {
		if !used[n] && n != "kelpie_view_changes_observed_total" {
			t.Errorf("declared %s is not on the dashboard", n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key would be ignored by Prometheus
	if err := dec.Decode(&rf); err != nil {
		t.Fatal(err)
	}
	decl := declared(t)
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q is empty or unnamed", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: rule without alert name or expr: %+v", g.Name, r)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || len(r.Annotations["description"]) < 40 {
				t.Errorf("%s: needs a summary and a real description", r.Alert)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			names := exprNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: uses no kelpie metric", r.Alert)
			}
			checkDeclared(t, r.Alert, names, decl)
		}
	}
	// The list.
	for _, want := range []string{"KelpieNoLeader", "KelpieNoQuorum", "KelpieLeaderFlapping", "KelpieVotersBelowTarget",
		"KelpieFailureDetectionSlow", "KelpieNodesSelfFencing", "KelpieMigrationsFailing", "KelpiePlacementRejectionsRising"} {
		if !alerts[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}
