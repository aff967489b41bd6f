package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// extras is what the status table adds to /v1/status, each best effort
// (nil or zero when its endpoint did not answer).
type extras struct {
	members *cluster.Members
	voters  *cluster.Voters // with health: from the leader
	lease   time.Duration
	leaseOK bool
}

// leaseMetric is the gauge holding a node's remaining membership lease.
const leaseMetric = "kelpie_lease_remaining_seconds"

func statusExtras(c *cli.Context, g globals, cl *cluster.Client, s *cluster.Status) extras {
	var x extras
	if m, err := call(c, g, cl.Members); err == nil {
		x.members = m
	}
	if v, err := call(c, g, cl.Voters); err == nil {
		x.voters = v
		if v.Health == nil && s.Leader.Known && s.Leader.HTTPAddr != "" && !s.IsLeader {
			if lc, err := clientFor(g, s.Leader.HTTPAddr); err == nil {
				if lv, err := call(c, g, lc.Voters); err == nil && lv.Health != nil {
					x.voters = lv
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(c.Context, g.timeout)
	defer cancel()
	x.lease, x.leaseOK = fetchLease(ctx, g, cl.Addr())
	return x
}

// fetchLease reads the lease gauge from the node's /metrics.
func fetchLease(ctx context.Context, g globals, base string) (time.Duration, bool) {
	hc, err := httpClient(g.tls)
	if err != nil {
		return 0, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	if g.token != "" {
		req.Header.Set("X-Kelpie-Token", g.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, leaseMetric)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, false
		}
		return time.Duration(v * float64(time.Second)), true
	}
	return 0, false
}

// membersSummary is "4: 3 active, 1 failed (s3)": members not Left, by
// committed status, naming the ones that are not active.
func membersSummary(m *cluster.Members) string {
	order := []consensus.Status{consensus.StatusActive, consensus.StatusJoining, consensus.StatusLeaving, consensus.StatusFailed}
	ids := map[consensus.Status][]string{}
	total := 0
	for _, r := range m.Members {
		if r.CommittedStatus == consensus.StatusLeft || r.CommittedStatus == consensus.StatusNone {
			continue
		}
		total++
		ids[r.CommittedStatus] = append(ids[r.CommittedStatus], r.ID)
	}
	var parts []string
	for _, st := range order {
		if len(ids[st]) == 0 {
			continue
		}
		p := fmt.Sprintf("%d %s", len(ids[st]), st)
		if st != consensus.StatusActive {
			p += " (" + strings.Join(ids[st], ", ") + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return strconv.Itoa(total)
	}
	return strconv.Itoa(total) + ": " + strings.Join(parts, ", ")
}

// voterHealth is "s1 (leader, healthy), s2 (voter, unhealthy)".
func voterHealth(v *cluster.Voters) string {
	var parts []string
	for _, s := range v.Health.Servers {
		h := "unhealthy"
		if s.Healthy {
			h = "healthy"
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", s.ID, s.Suffrage, h))
	}
	return strings.Join(parts, ", ")
}
