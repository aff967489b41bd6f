package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// TestHTTPAPI exercises every endpoint on a server and a client node, and
// checks that bad input gets a 4xx with a JSON error body.
func TestHTTPAPI(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, n := range []*Node{tc.node("s1"), c1} {
		cl, err := NewClient(n.HTTPAddr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cl.Status(ctx)
		if err != nil || st.NodeID != n.ID() || !st.Ready || st.SelfStatus != consensus.StatusActive || !st.Leader.Known {
			t.Errorf("%s status: %+v err %v", n.ID(), st, err)
		}
		ms, err := cl.Members(ctx)
		if err != nil || len(ms.Members) != 4 {
			t.Fatalf("%s members: %+v err %v", n.ID(), ms, err)
		}
		for _, row := range ms.Members {
			if row.GossipStatus != "alive" || row.CommittedStatus != consensus.StatusActive {
				t.Errorf("%s: member row %+v", n.ID(), row)
			}
			if n.IsServer() && row.Role == consensus.RoleServer && row.Raft != "voter" {
				t.Errorf("%s: server row %+v not a voter", n.ID(), row)
			}
		}
		li, err := cl.Leader(ctx)
		if err != nil || !li.Known || li.HTTPAddr == "" || li.Term == 0 {
			t.Errorf("%s leader: %+v err %v", n.ID(), li, err)
		}
		vs, err := cl.Voters(ctx)
		if err != nil || countVoters(vs.Peers) != 3 {
			t.Errorf("%s voters: %+v err %v", n.ID(), vs, err)
		}
		if err := cl.Ready(ctx); err != nil {
			t.Errorf("%s ready: %v", n.ID(), err)
		}
		v, err := cl.View(ctx, 0, 0)
		if err != nil || v.Epoch == 0 {
			t.Errorf("%s view: %v err %v", n.ID(), v, err)
		}
		// A blocking query at the current index waits out ?wait.
		start := time.Now()
		if _, err := cl.View(ctx, v.Index, 300*time.Millisecond); err != nil || time.Since(start) < 250*time.Millisecond {
			t.Errorf("%s blocking view returned after %s err %v", n.ID(), time.Since(start), err)
		}
		for _, path := range []string{"/v1/health/live", "/metrics"} {
			resp, err := http.Get("http://" + n.HTTPAddr() + path)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s %s: %v %v", n.ID(), path, resp, err)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if path == "/metrics" && !strings.Contains(string(b), "kelpie_view_epoch") {
				t.Errorf("%s /metrics lacks kelpie_view_epoch", n.ID())
			}
		}
	}

	base := "http://" + tc.node("s2").HTTPAddr()
	bad := []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"GET", "/v1/view?index=abc", "", 400, "invalid_argument"},
		{"GET", "/v1/view?index=1&wait=soon", "", 400, "invalid_argument"},
		{"GET", "/v1/nope", "", 404, "not_found"},
		{"POST", "/v1/internal/leave", "{not json", 400, "invalid_argument"},
		{"POST", "/v1/internal/leave", `{"id":"c1","boot":"x","extra":1}`, 400, "invalid_argument"},
		{"POST", "/v1/internal/leave", `{"id":"bad id!"}`, 400, "invalid_argument"},
		{"POST", "/v1/internal/leave", `{"id":"ghost","boot":"x"}`, 404, "unknown_node"},
		{"POST", "/v1/internal/leave", `{"id":"c1","boot":"not-its-boot"}`, 404, "unknown_node"},
	}
	for _, b := range bad {
		req, _ := http.NewRequest(b.method, base+b.path, strings.NewReader(b.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != b.code || err != nil || eb.Code != b.errCode || eb.Error == "" {
			t.Errorf("%s %s %s: got %d %+v (%v), want %d %s", b.method, b.path, b.body, resp.StatusCode, eb, err, b.code, b.errCode)
		}
	}

	// A client leaves gracefully through a forwarded request.
	if err := c1.Leave(ctx); err != nil {
		t.Fatalf("client leave: %v", err)
	}
	if m, _ := c1.Self(); m.Status != consensus.StatusLeft {
		t.Errorf("client sees itself %s after Leave", m.Status)
	}
	tc.stop("c1")
	waitFor(t, 10*time.Second, "c1 Left everywhere", func() bool {
		return converged(tc.live(), map[string]consensus.Status{"c1": consensus.StatusLeft})
	})
	// Still Left after a few reconcile rounds (it must not be readmitted).
	time.Sleep(3 * tc.node("s1").cfg.ReconcileInterval)
	if m, _ := tc.node("s1").View().Member("c1"); m.Status != consensus.StatusLeft {
		t.Errorf("c1 readmitted after leaving: %+v", m)
	}
}

func TestConfigValidate(t *testing.T) {
	good := TestConfig()
	good.NodeID = "n1"
	good.Server = true
	if err := good.Validate(); err != nil {
		t.Fatalf("TestConfig invalid: %v", err)
	}
	bad := map[string]func(*Config){
		"empty id":         func(c *Config) { c.NodeID = "" },
		"id chars":         func(c *Config) { c.NodeID = "a b" },
		"unspecified bind": func(c *Config) { c.BindAddr = "0.0.0.0" },
		"bad port":         func(c *Config) { c.HTTPPort = 70000 },
		"expect client":    func(c *Config) { c.Server = false; c.BootstrapExpect = 3 },
		"voters 4":         func(c *Config) { c.Voters.Voters = 4 },
		"quorum timeout":   func(c *Config) { c.QuorumTimeout = 0 },
		"raft timings":     func(c *Config) { c.Raft.LeaderLeaseTimeout = time.Hour },
	}
	for name, f := range bad {
		c := good
		f(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := New(c, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: New returned %v, want ErrInvalidArgument", name, err)
		}
	}
}
