package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
)

// TestKelpiectlVerbs runs every kelpiectl verb against a real cluster of
// three servers and a client (kelpied processes), checking table layouts
// against golden files (volatile fields masked) and JSON documents field by
// field; then it freezes the leader (SIGSTOP) and kills a follower (kill -9)
// and checks what status, members, leader and voters report, refuses and
// performs a voter removal, makes the client leave, and restores the saved
// snapshot on a second, fresh cluster.
//
// IPs 127.0.0.180-189: cluster A on .180-.183, cluster B on .184-.187, and
// .189 as an address where nothing listens.
func TestKelpiectlVerbs(t *testing.T) {
	t.Parallel()
	lockAddresses(t, "127.0.0.180-189")
	h := newHarness(t)
	servers := []string{"s1", "s2", "s3"}
	ip := map[string]string{"s1": "127.0.0.180", "s2": "127.0.0.181", "s3": "127.0.0.182", "c1": "127.0.0.183"}
	startServers(h, servers, []string{ip["s1"], ip["s2"], ip["s3"]})
	clientFlags := []string{"--zone", "z1", "--label", "tier=edge"}
	h.start(nodeOpts{Name: "c1", IP: ip["c1"], Join: []string{gossipAddr(ip["s1"]), gossipAddr(ip["s2"])}, Extra: clientFlags})
	all := []string{"c1", "s1", "s2", "s3"}
	waitSameView(t, h, all, formTimeout, "cluster A formed", func(v consensus.View) bool {
		return allHaveStatus(v, consensus.StatusActive, all...)
	})
	at := func(name string) ctlAt { return ctlAt{t: t, addr: httpURL(ip[name])} }
	c1 := at("c1")
	leader := waitLeaderVia(t, c1, "")
	// Voter health settles a little after the leader is elected.
	waitFor(t, 30*time.Second, "three healthy voters", func() (bool, string) {
		v, r := jsonOf[cluster.Voters](at(leader).run("voters", "--format", "json"))
		return v.Health != nil && v.Health.Healthy && len(v.Health.Servers) == 3 && v.Health.FailureTolerance == 1, r.out + r.err
	})

	t.Run("version", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "version", c1.ok("version"), mask{res: []maskRE{re(`http://\S+\)`, "<URL>)")}})
		vi, _ := jsonOf[struct {
			Kelpiectl  string `json:"kelpiectl"`
			Agent      string `json:"agent"`
			NodeID     string `json:"node_id"`
			Addr       string `json:"addr"`
			AgentError string `json:"agent_error"`
		}](c1.run("version", "--format", "json"))
		if vi.Kelpiectl != "integration" || vi.Agent != "integration" || vi.NodeID != "c1" || vi.AgentError != "" {
			t.Errorf("version = %+v", vi)
		}
		if bash := c1.ok("completion", "bash"); !strings.Contains(bash, "complete -o bashdefault -o default -F _kelpiectl_complete kelpiectl") {
			t.Errorf("bash completion script:\n%s", bash)
		}
		if zsh := c1.ok("completion", "zsh"); !strings.Contains(zsh, "compdef _kelpiectl kelpiectl") {
			t.Errorf("zsh completion script:\n%s", zsh)
		}
		// The completion hook itself lists the verbs.
		if words := c1.ok("--generate-bash-completion"); !strings.Contains(words, "snapshot") || !strings.Contains(words, "drain") {
			t.Errorf("completion words: %q", words)
		}
	})

	t.Run("status", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "status-client", c1.ok("status"), mask{
			keys: []string{"HTTP", "Gossip", "Leader", "Term", "Epoch", "View index", "Voters", "Lease", "Gossip drops"}})
		s, _ := jsonOf[cluster.Status](at("s2").with(t).run("status", "--format", "json"))
		if s.NodeID != "s2" || s.Role != consensus.RoleServer || !s.Ready || s.SelfStatus != consensus.StatusActive ||
			s.Leader.ID != leader || s.Term == 0 || s.Epoch == 0 || s.CommitIndex == 0 || len(s.Voters) != 3 || s.Members != 4 {
			t.Errorf("status of s2 = %+v", s)
		}
	})

	t.Run("members", func(t *testing.T) {
		s2 := at("s2").with(t)
		checkGolden(t, "members", s2.ok("members"), mask{cols: []string{"GOSSIP ADDR", "HTTP ADDR"}})
		m, _ := jsonOf[cluster.Members](s2.run("members", "--format", "json"))
		if m.Epoch == 0 || len(m.Members) != 4 {
			t.Fatalf("members = %+v", m)
		}
		for _, r := range m.Members {
			wantRaft := "voter"
			if r.ID == "c1" {
				wantRaft = "client"
			}
			if r.CommittedStatus != consensus.StatusActive || r.GossipStatus != "alive" || r.Raft != wantRaft ||
				r.HTTPAddr != ip[r.ID]+":7500" || r.Version != "integration" || r.Incarnation != 1 {
				t.Errorf("member row %+v", r)
			}
		}
		if m.Members[0].ID != "c1" || m.Members[0].Zone != "z1" || m.Members[0].Role != consensus.RoleClient {
			t.Errorf("c1 row %+v", m.Members[0])
		}
		f, _ := jsonOf[cluster.Members](s2.run("members", "--role", "client", "--status", "active,failed", "--format", "json"))
		if len(f.Members) != 1 || f.Members[0].ID != "c1" {
			t.Errorf("filtered members = %+v", f)
		}
	})

	t.Run("view", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "view", c1.ok("view"), mask{cols: []string{"GOSSIP ADDR", "HTTP ADDR", "EPOCH", "REASON"},
			res: []maskRE{re(`epoch \d+  index \d+`, "epoch <*>  index <*>")}})
		v, _ := jsonOf[consensus.View](c1.run("view", "--format", "json"))
		if v.Epoch == 0 || v.Index == 0 || !allHaveStatus(v, consensus.StatusActive, all...) || len(v.Members) != 4 {
			t.Errorf("view = %s", nemesis.DescribeView(v))
		}
		if m, _ := v.Member("c1"); m.Role != consensus.RoleClient || m.Zone != "z1" || m.Boot == "" || m.Incarnation != 1 {
			t.Errorf("c1 in the view: %+v", m)
		}
	})

	t.Run("leader voters", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "leader", c1.ok("leader"), mask{cols: []string{"ID", "HTTP ADDR", "RAFT ADDR", "TERM"}})
		l, _ := jsonOf[cluster.LeaderInfo](c1.run("leader", "--format", "json"))
		if !l.Known || l.ID != leader || l.HTTPAddr != ip[leader]+":7500" || l.RaftAddr != ip[leader]+":7502" || l.Term == 0 {
			t.Errorf("leader = %+v", l)
		}
		lv := at(leader).with(t)
		checkGolden(t, "voters", lv.ok("voters"), mask{cols: []string{"ADDRESS", "LEADER", "LAST CONTACT", "LAST INDEX"}})
		v, _ := jsonOf[cluster.Voters](lv.run("voters", "--format", "json"))
		if v.Leader != leader || len(v.Peers) != 3 || v.Health == nil || !v.Health.Healthy || v.Health.Target != 3 {
			t.Errorf("voters = %+v", v)
		}
		for i, p := range v.Peers {
			if p.ID != servers[i] || !p.Voter || p.Address != ip[p.ID]+":7502" {
				t.Errorf("peer %+v", p)
			}
		}
	})

	t.Run("place lookup invoke placements", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "place", c1.ok("place", "a1", "--prefer", "s1"), mask{keys: []string{"Token"}})
		p, _ := jsonOf[cluster.PlaceResult](c1.run("place", "--format", "json", "a2", "--prefer", "s2"))
		if p.Existing || p.Placement.Node != "s2" || p.Placement.Token == 0 || p.Placement.Incarnation != 1 || p.Placement.Actor != "a2" {
			t.Errorf("place a2 = %+v", p)
		}
		p, _ = jsonOf[cluster.PlaceResult](c1.run("place", "a3", "--zone", "z1", "--label", "tier=edge", "--format", "json"))
		if p.Placement.Node != "c1" {
			t.Errorf("a3 with zone z1 and label tier=edge went to %s, want c1", p.Placement.Node)
		}
		p, _ = jsonOf[cluster.PlaceResult](c1.run("place", "a1", "--prefer", "s3", "--format", "json"))
		if !p.Existing || p.Placement.Node != "s1" {
			t.Errorf("placing a1 again = %+v, want the existing placement on s1", p)
		}
		c1.fails(1, "no active node matches the constraints", "place", "a4", "--label", "tier=nowhere")
		c1.fails(2, "need KEY=VALUE", "place", "a4", "--label", "tier")
		c1.fails(2, "missing ACTOR", "place")

		checkGolden(t, "lookup", c1.ok("lookup", "a1"), mask{keys: []string{"Token", "As of index"}})
		l, _ := jsonOf[cluster.LookupResult](c1.run("lookup", "a2", "--consistent", "--format", "json"))
		if !l.Found || l.Placement.Node != "s2" || l.Index == 0 {
			t.Errorf("lookup a2 = %+v", l)
		}
		c1.fails(1, `actor "ghost" is not placed`, "lookup", "ghost")

		checkGolden(t, "invoke", c1.ok("invoke", "a1", `{"op":"incr"}`), mask{keys: []string{"Token"},
			res: []maskRE{re(`"token":\d+`, `"token":<*>`)}})
		inv, _ := jsonOf[invokeAnswer](c1.run("invoke", "a1", `{"op":"incr"}`, "--format", "json"))
		if inv.Node != "s1" || inv.Body.Value != 2 || inv.Token == 0 {
			t.Errorf("second incr of a1 = %+v, want value 2 on s1", inv)
		}
		c1.fails(2, "not JSON", "invoke", "a1", "incr")
		c1.fails(1, "bad request", "invoke", "a1", `{"op":"explode"}`)

		// Lists come from the replica of the server asked (a client asks a
		// random one, which may lag a moment); the leader has them all.
		lc := at(leader).with(t)
		waitFor(t, 10*time.Second, "three placements on the leader", func() (bool, string) {
			pl, r := jsonOf[cluster.PlacementList](lc.run("placements", "--format", "json"))
			return len(pl.Placements) == 3, r.out + r.err
		})
		checkGolden(t, "placements", lc.ok("placements"), mask{cols: []string{"TOKEN"},
			res: []maskRE{re(`as of index \d+`, "as of index <*>")}})
		pl, _ := jsonOf[cluster.PlacementList](lc.run("placements", "--node", "c1", "--format", "json"))
		if len(pl.Placements) != 1 || pl.Placements[0].Actor != "a3" || pl.Index == 0 {
			t.Errorf("placements on c1 = %+v", pl)
		}
	})

	t.Run("migrate migrations drain release", func(t *testing.T) {
		c1 := c1.with(t)
		checkGolden(t, "migrate", c1.ok("migrate", "a1", "--to", "s3"), mask{keys: []string{"Migration", "Old token", "New token", "Duration"}})
		inv, _ := jsonOf[invokeAnswer](c1.run("invoke", "a1", `{"op":"get"}`, "--format", "json"))
		if inv.Node != "s3" || inv.Body.Value != 2 {
			t.Errorf("a1 after the migration = %+v, want value 2 on s3", inv)
		}
		o, _ := jsonOf[cluster.MigrationOutcome](c1.run("migrate", "a2", "--to", "s1", "--format", "json"))
		if o.State != consensus.MigrationCommitted || o.Actor != "a2" || o.From != "s2" || o.To != "s1" || o.NewToken <= o.OldToken || o.ID == 0 {
			t.Errorf("migrate a2 = %+v", o)
		}
		c1.fails(2, "--to NODE is required", "migrate", "a1")
		c1.fails(1, "", "migrate", "a1", "--to", "ghost")

		type migrationList struct {
			Migrations []cluster.MigrationInfo `json:"migrations"`
		}
		var ml migrationList
		lc := at(leader).with(t)
		waitFor(t, 10*time.Second, "both migrations on the leader", func() (bool, string) {
			var r ctlResult
			ml, r = jsonOf[migrationList](lc.run("migrations", "--format", "json", "--state", "committed"))
			return len(ml.Migrations) == 2, r.out + r.err
		})
		checkGolden(t, "migrations", lc.ok("migrations", "--state", "committed"), mask{cols: []string{"ID", "OLD TOKEN", "NEW TOKEN", "STARTED", "DURATION"}})
		if len(ml.Migrations) != 2 || ml.Migrations[0].Actor != "a1" || ml.Migrations[1].Actor != "a2" ||
			ml.Migrations[0].Checksum == "" || ml.Migrations[0].EndedAt < ml.Migrations[0].StartedAt {
			t.Errorf("committed migrations = %+v", ml)
		}
		c1.fails(2, "need running, committed or aborted", "migrations", "--state", "done")

		// a1 migrated to s3 a moment ago: its cooldown (5s) keeps it there
		// for one pass, which fails; --wait keeps going until it moves.
		r := c1.run("drain", "s3")
		if first, _, _ := strings.Cut(r.err, "\n"); r.code != 1 || first != "kelpiectl: drain of s3 incomplete: still there: a1" {
			t.Errorf("drain s3 during a1's cooldown: exit %d, stderr %q", r.code, r.err)
		}
		checkGolden(t, "drain-incomplete", r.out, mask{keys: []string{"Duration"}})
		out := c1.ok("drain", "s3", "--wait")
		if strings.Contains(out, "\r") || strings.Contains(out, "pass") {
			t.Errorf("progress printed although stdout is not a terminal: %q", out)
		}
		checkGolden(t, "drain", out, mask{keys: []string{"Duration"}})
		waitFor(t, 10*time.Second, "s3 empty on the server c1 reads", func() (bool, string) {
			pl, r := jsonOf[cluster.PlacementList](c1.run("placements", "--node", "s3", "--format", "json"))
			return r.code == 0 && len(pl.Placements) == 0, r.out + r.err
		})
		d, _ := jsonOf[cluster.DrainResult](c1.run("drain", "s3", "--wait", "--format", "json"))
		if d.Node != "s3" || d.Moved != 0 || len(d.Failed) != 0 {
			t.Errorf("drain --wait of an empty node = %+v", d)
		}
		c1.fails(1, "unknown node", "drain", "ghost")

		checkGolden(t, "release", c1.ok("release", "a3"), mask{})
		c1.fails(1, `actor "a3" is not placed`, "lookup", "a3", "--consistent")
		c1.fails(1, "not placed", "release", "a3")
	})

	dir := t.TempDir()
	snap := filepath.Join(dir, "a.snap")
	t.Run("snapshot save", func(t *testing.T) {
		c1 := c1.with(t)
		out := c1.ok("snapshot", "save", snap)
		if strings.Contains(out, "\r") || strings.Contains(out, "saving snapshot") {
			t.Errorf("progress printed although stdout is not a terminal: %q", out)
		}
		checkGolden(t, "snapshot-save", out, mask{keys: []string{"File", "Bytes", "SHA-256", "Epoch", "View index", "Applied index"}})
		st, err := os.Stat(snap)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file: %v, %v; want mode 0600", st, err)
		}
		data, _ := os.ReadFile(snap)
		info, err := consensus.ValidateSnapshot(data)
		if err != nil || info.Placements != 2 || info.InView != 4 || info.Migrations != 0 {
			t.Errorf("saved snapshot %+v: %v", info, err)
		}
		s, _ := jsonOf[struct {
			File     string                 `json:"file"`
			Bytes    int64                  `json:"bytes"`
			SHA256   string                 `json:"sha256"`
			Index    uint64                 `json:"index"`
			Snapshot consensus.SnapshotInfo `json:"snapshot"`
		}](at("s2").with(t).run("snapshot", "save", filepath.Join(dir, "b.snap"), "--format", "json"))
		if s.File != filepath.Join(dir, "b.snap") || s.Bytes == 0 || len(s.SHA256) != 64 || s.Index == 0 || s.Snapshot.Placements != 2 {
			t.Errorf("snapshot save json = %+v", s)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
			t.Errorf("temporary files left behind: %v", left)
		}
		// On a terminal (script(1) provides one) progress is shown, then
		// cleared before the summary.
		if scriptBin, err := exec.LookPath("script"); err == nil {
			cmd := exec.Command(scriptBin, "-qec", fmt.Sprintf("%s --addr %s snapshot save %s", kelpiectlBin, httpURL(ip["c1"]), filepath.Join(dir, "tty.snap")), "/dev/null")
			cmd.Env = cleanEnv()
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "\r\033[Ksaving snapshot: ") || !strings.Contains(string(out), "Placements") {
				t.Errorf("snapshot save on a terminal: %v, output %q; want progress, then the summary", err, out)
			}
		} else {
			t.Log("script(1) not found: progress on a terminal not checked")
		}
	})

	t.Run("snapshot restore corrupt", func(t *testing.T) {
		c1, lc := c1.with(t), at(leader).with(t)
		before, _ := jsonOf[cluster.PlacementList](lc.run("placements", "--format", "json"))
		data, _ := os.ReadFile(snap)
		bad := filepath.Join(dir, "bad.snap")
		if err := os.WriteFile(bad, data[:len(data)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		c1.fails(1, "invalid snapshot", "snapshot", "restore", bad)
		req, _ := http.NewRequest(http.MethodPut, httpURL(ip["s2"])+"/v1/snapshot", bytes.NewReader(data[:len(data)-5]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb cluster.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || eb.Code != "invalid_argument" || !strings.Contains(eb.Error, "invalid snapshot") {
			t.Errorf("PUT corrupt snapshot: %d %+v", resp.StatusCode, eb)
		}
		after, _ := jsonOf[cluster.PlacementList](lc.run("placements", "--format", "json"))
		if !slices.Equal(before.Placements, after.Placements) {
			t.Errorf("a refused restore changed the placements: %+v → %+v", before.Placements, after.Placements)
		}
	})

	t.Run("errors", func(t *testing.T) {
		ctlAt{t: t, addr: "http://127.0.0.189:7500"}.fails(1, "cannot reach http://127.0.0.189:7500", "status")
		c1 := c1.with(t)
		c1.fails(2, "flag provided but not defined: -frmat", "members", "--frmat", "json")
		if r := c1.run("members", "--frmat", "json"); !strings.Contains(r.err, "Usage: kelpiectl [global flags] members") {
			t.Errorf("misspelled flag: no usage line in %q", r.err)
		}
		c1.fails(2, "unknown command", "membres")
		c1.fails(2, "need table or json", "status", "--format", "yaml")
		c1.fails(2, "unexpected arguments", "status", "extra")
		c1.fails(2, "need a subcommand", "snapshot")
	})

	// From here on the cluster is broken on purpose. A watcher follows the
	// view through it and must print each epoch once, in order.
	watch := startWatch(t, ip["c1"])

	t.Run("frozen leader", func(t *testing.T) {
		signalNode(t, h, leader, syscall.SIGSTOP)
		t.Cleanup(func() { _ = signalQuiet(h, leader, syscall.SIGCONT) })
		others := without(servers, leader)
		var newLeader string
		waitFor(t, failTimeout, "a new leader, and the frozen one Failed in the committed view", func() (bool, string) {
			l, r := jsonOf[cluster.LeaderInfo](at(others[0]).run("leader", "--format", "json"))
			if !l.Known || l.ID == leader {
				return false, r.out + r.err
			}
			newLeader = l.ID
			m, r := jsonOf[cluster.Members](at(newLeader).run("members", "--format", "json"))
			row, ok := rowOf(m, leader)
			return ok && row.CommittedStatus == consensus.StatusFailed, r.out
		})
		for _, n := range append(others, "c1") {
			s, _ := jsonOf[cluster.Status](at(n).with(t).run("status", "--format", "json"))
			if !s.Leader.Known || s.Leader.ID != newLeader || (n == newLeader) != s.IsLeader {
				t.Errorf("status of %s: leader %+v is_leader %v, want %s", n, s.Leader, s.IsLeader, newLeader)
			}
		}
		// The client follows the committed view from a server; if it was
		// following the frozen one, its blocking query has to time out
		// first (FollowWait 30s + 5s).
		waitFor(t, 60*time.Second, "c1's status table showing the frozen leader failed", func() (bool, string) {
			out := c1.run("status").out
			return strings.Contains(out, "4: 3 active, 1 failed ("+leader+")") && strings.Contains(out, newLeader+" (http ") &&
				strings.Contains(out, leader+" (voter, unhealthy)"), out
		})
		out := at(newLeader).with(t).ok("members")
		if !lineMatches(out, leader, "failed", "failed") && !lineMatches(out, leader, "suspect", "failed") {
			t.Errorf("members table does not show %s failed:\n%s", leader, out)
		}
		out = at(newLeader).with(t).ok("leader")
		if !strings.Contains(out, newLeader) || strings.Contains(out, leader+"  ") {
			t.Errorf("leader table:\n%s", out)
		}
		// Woken up, the old leader rejoins as a follower.
		signalNode(t, h, leader, syscall.SIGCONT)
		waitSameView(t, h, all, recoverTimeout, "the woken leader Active again", func(v consensus.View) bool {
			return allHaveStatus(v, consensus.StatusActive, all...)
		})
		waitFor(t, 30*time.Second, "the old leader follows the new one", func() (bool, string) {
			s, r := jsonOf[cluster.Status](at(leader).run("status", "--format", "json"))
			return s.Leader.Known && !s.IsLeader && s.Leader.ID != leader && s.Ready, r.out + r.err
		})
		leader = waitLeaderVia(t, c1, "")
	})

	t.Run("killed follower and voter removal", func(t *testing.T) {
		followers := without(servers, leader)
		dead, other := followers[0], followers[1]
		h.kill9(dead)
		waitFor(t, failTimeout, dead+" Failed in the committed view", func() (bool, string) {
			m, r := jsonOf[cluster.Members](c1.run("members", "--format", "json"))
			row, ok := rowOf(m, dead)
			return ok && row.CommittedStatus == consensus.StatusFailed, r.out
		})
		out := c1.with(t).ok("members")
		if !lineMatches(out, dead, "failed", "failed") {
			t.Errorf("members table does not show %s failed (gossip and committed):\n%s", dead, out)
		}
		waitFor(t, 30*time.Second, dead+" unhealthy in the leader's voter health", func() (bool, string) {
			out := c1.run("status").out
			return strings.Contains(out, "1 failed ("+dead+")") && strings.Contains(out, dead+" (voter, unhealthy)"), out
		})
		// Removing a healthy voter now would leave one healthy of two.
		c1.with(t).fails(1, "removing voter "+other+" would lose quorum: 1 of 2 remaining voters healthy", "voters", "remove", other)
		c1.with(t).fails(1, "ghost is not in the Raft configuration", "voters", "remove", "ghost")
		checkGolden(t, "voters-remove", c1.with(t).ok("voters", "remove", dead), mask{res: []maskRE{re(`\bs[123]\b`, "sN")}})
		v, _ := jsonOf[cluster.Voters](at(leader).with(t).run("voters", "--format", "json"))
		if len(v.Peers) != 2 || slices.ContainsFunc(v.Peers, func(p consensus.Peer) bool { return p.ID == dead }) {
			t.Errorf("voters after removing %s: %+v", dead, v.Peers)
		}
	})

	t.Run("view watch", func(t *testing.T) {
		views := watch.stop(t)
		// Each committed view change is printed exactly once, in order:
		// every view change is epoch+1, so the printed epochs are
		// consecutive. The frozen leader's and the killed follower's
		// failures each appear, and the woken leader's rejoin.
		var failures, joins []string
		for i, v := range views {
			if i == 0 {
				continue
			}
			prev := views[i-1]
			if v.Epoch != prev.Epoch+1 || v.Index <= prev.Index {
				t.Errorf("watch printed %s after %s, want the next epoch", nemesis.DescribeView(v), nemesis.DescribeView(prev))
			}
			for _, m := range v.Members {
				was, _ := prev.Member(m.ID)
				if m.Status == consensus.StatusFailed && was.Status != consensus.StatusFailed {
					failures = append(failures, fmt.Sprintf("%s@%d", m.ID, v.Epoch))
				}
				if m.Status == consensus.StatusActive && was.Status != consensus.StatusActive {
					joins = append(joins, fmt.Sprintf("%s@%d", m.ID, v.Epoch))
				}
			}
		}
		t.Logf("view --watch printed %d views: failures %v, (re)joins %v", len(views), failures, joins)
		if len(failures) != 2 {
			t.Errorf("watch saw failures %v over %d views, want the frozen leader's and the killed follower's", failures, len(views))
		}
		if len(joins) == 0 {
			t.Errorf("watch saw no (re)join over %d views, want the woken leader's", len(views))
		}
	})

	t.Run("leave", func(t *testing.T) {
		checkGolden(t, "leave", c1.with(t).ok("leave"), mask{})
		waitFor(t, 30*time.Second, "c1's agent exits", func() (bool, string) {
			st := h.exitStatus("c1")
			return st != nil, fmt.Sprint(st)
		})
		if st := h.exitStatus("c1"); st.ExitCode() != 0 {
			t.Errorf("c1 after leave: %v, want exit 0", st)
		}
		m, _ := jsonOf[cluster.Members](at(leader).with(t).run("members", "--format", "json"))
		if row, _ := rowOf(m, "c1"); row.CommittedStatus != consensus.StatusLeft {
			t.Errorf("c1 after leave: %+v, want left", row)
		}
	})

	t.Run("snapshot restore on a fresh cluster", func(t *testing.T) {
		// Cluster B also runs with an access token and gossip encryption,
		// for the token and keyring checks below.
		const token = "b-secret"
		secure := []string{"--acl-token", token, "--encrypt", keyringKey1}
		hb := newHarness(t)
		bip := map[string]string{"s1": "127.0.0.184", "s2": "127.0.0.185", "s3": "127.0.0.186", "c1": "127.0.0.187"}
		for _, name := range servers {
			var join []string
			for _, other := range servers {
				if other != name {
					join = append(join, gossipAddr(bip[other]))
				}
			}
			hb.start(nodeOpts{Name: name, IP: bip[name], Server: true, BootstrapExpect: 3, Join: join, Extra: secure})
		}
		hb.start(nodeOpts{Name: "c1", IP: bip["c1"], Join: []string{gossipAddr(bip["s3"])}, Extra: append(clientFlags, secure...)})
		for _, n := range all {
			hb.client(n).SetToken(token)
		}
		waitSameView(t, hb, all, formTimeout, "cluster B formed", func(v consensus.View) bool {
			return allHaveStatus(v, consensus.StatusActive, all...)
		})
		b := ctlAt{t: t, addr: httpURL(bip["c1"]), token: token}
		ctlAt{t: t, addr: b.addr, token: "wrong"}.fails(1, "access denied by "+b.addr+": token not valid for this endpoint", "status")
		ctlAt{t: t, addr: b.addr}.fails(1, "a token is required", "placements")
		data, _ := os.ReadFile(snap)
		var doc struct {
			Members []consensus.Member `json:"members"`
			Table   struct {
				Placements []struct{ Actor, Node string } `json:"placements"`
			} `json:"table"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "snapshot-restore", b.ok("snapshot", "restore", snap), mask{keys: []string{"File", "Epoch", "Index"}})
		wantPlaced := map[string]string{}
		for _, p := range doc.Table.Placements {
			wantPlaced[p.Actor] = p.Node
		}
		wantStatus := map[string]consensus.Status{}
		for _, m := range doc.Members {
			wantStatus[m.ID] = m.Status
		}
		reproduced := func() (bool, string) {
			v, r := jsonOf[consensus.View](b.run("view", "--format", "json"))
			got := map[string]consensus.Status{}
			for _, m := range v.Members {
				got[m.ID] = m.Status
			}
			pl, r2 := jsonOf[cluster.PlacementList](ctlAt{t: t, addr: httpURL(bip["s2"]), token: token}.run("placements", "--format", "json"))
			placed := map[string]string{}
			for _, p := range pl.Placements {
				placed[p.Actor] = p.Node
			}
			return fmt.Sprint(got) == fmt.Sprint(wantStatus) && fmt.Sprint(placed) == fmt.Sprint(wantPlaced),
				fmt.Sprintf("view %v placements %v (want %v, %v) %s %s", got, placed, wantStatus, wantPlaced, r.err, r2.err)
		}
		waitFor(t, 15*time.Second, "the snapshot's view and placements on cluster B", reproduced)
		time.Sleep(3 * time.Second) // several reconcile rounds
		if ok, detail := reproduced(); !ok {
			t.Errorf("the restored state did not stay: %s", detail)
		}
		for actor, node := range wantPlaced {
			inv, _ := jsonOf[invokeAnswer](b.with(t).run("invoke", actor, `{"op":"get"}`, "--format", "json"))
			if inv.Node != node {
				t.Errorf("invoke %s on cluster B ran on %q, want %s", actor, inv.Node, node)
			}
		}

		// Key rotation on cluster B: install, use, remove.
		b = b.with(t)
		checkGolden(t, "keyring-list", b.ok("keyring", "list"), mask{})
		checkGolden(t, "keyring-install", b.ok("keyring", "install", keyringKey2), mask{})
		b.ok("keyring", "use", keyringKey2)
		b.ok("keyring", "remove", keyringKey1)
		kr, _ := jsonOf[cluster.KeyringResponse](b.run("keyring", "list", "--format", "json"))
		if kr.NumNodes != 4 || kr.NumErr != 0 || fmt.Sprint(kr.Keys) != fmt.Sprintf("map[%s:4]", keyringKey2) ||
			fmt.Sprint(kr.PrimaryKeys) != fmt.Sprintf("map[%s:4]", keyringKey2) {
			t.Errorf("keyring after the rotation = %+v", kr)
		}
		b.fails(1, "", "keyring", "install", "not-a-key")
		b.fails(2, "missing KEY", "keyring", "use")
		b.fails(2, "need a subcommand", "keyring")
	})
}

// Gossip keys of cluster B (base64 of 32 bytes).
const (
	keyringKey1 = "ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJlZWY="
	keyringKey2 = "Y2FmZWJhYmVjYWZlYmFiZWNhZmViYWJlY2FmZWJhYmU="
)

// lockAddresses holds an exclusive file lock named after an address range
// until the test ends, so that two runs of the suite on one machine (two
// checkouts, or two engineers) take turns on the fixed addresses instead of
// colliding on them.
func lockAddresses(t *testing.T, name string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "kelpie-integration-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("address lock: %v", err)
	}
	start := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("address lock: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for another run to release %s", waited.Round(time.Second), name)
	}
	// Registered first, so it runs after the harness has stopped every
	// process.
	t.Cleanup(func() { f.Close() })
}

// ctlAt runs kelpiectl against one node, with an access token if set.
type ctlAt struct {
	t     *testing.T
	addr  string
	token string
}

type ctlResult struct {
	out, err string
	code     int
}

func (c ctlAt) with(t *testing.T) ctlAt { c.t = t; return c }

func (c ctlAt) run(args ...string) ctlResult {
	c.t.Helper()
	var env []string
	if c.token != "" {
		env = []string{"KELPIE_TOKEN=" + c.token}
	}
	out, errOut, code := runCtl(c.t, env, append([]string{"--addr", c.addr}, args...)...)
	return ctlResult{out, errOut, code}
}

// ok runs a command that must succeed and returns its stdout.
func (c ctlAt) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("kelpiectl %v: exit %d, stderr %q", args, r.code, r.err)
	}
	if r.err != "" {
		c.t.Errorf("kelpiectl %v: unexpected stderr %q", args, r.err)
	}
	return r.out
}

// fails runs a command that must exit with code and print one line on
// stderr containing msg.
func (c ctlAt) fails(code int, msg string, args ...string) {
	c.t.Helper()
	r := c.run(args...)
	first, _, _ := strings.Cut(r.err, "\n")
	if r.code != code || !strings.Contains(first, msg) || !strings.HasPrefix(first, "kelpiectl: ") {
		c.t.Errorf("kelpiectl %v: exit %d, stderr %q; want exit %d and a message containing %q", args, r.code, r.err, code, msg)
	}
	if code == 1 && strings.Count(r.err, "\n") != 1 {
		c.t.Errorf("kelpiectl %v: want a one-line message, got %q", args, r.err)
	}
}

// jsonOf decodes a command's stdout as exactly one JSON document.
func jsonOf[T any](r ctlResult) (T, ctlResult) {
	var v T
	if r.code != 0 {
		return v, r
	}
	dec := json.NewDecoder(strings.NewReader(r.out))
	if err := dec.Decode(&v); err != nil || dec.More() {
		r.err += fmt.Sprintf(" (stdout is not one JSON document: %v)", err)
	}
	return v, r
}

func waitLeaderVia(t *testing.T, c ctlAt, not string) string {
	t.Helper()
	var id string
	waitFor(t, formTimeout, "a leader", func() (bool, string) {
		l, r := jsonOf[cluster.LeaderInfo](c.run("leader", "--format", "json"))
		id = l.ID
		return l.Known && l.ID != not, r.out + r.err
	})
	return id
}

func rowOf(m cluster.Members, id string) (cluster.MemberRow, bool) {
	for _, r := range m.Members {
		if r.ID == id {
			return r, true
		}
	}
	return cluster.MemberRow{}, false
}

func without(ids []string, drop string) []string {
	var out []string
	for _, id := range ids {
		if id != drop {
			out = append(out, id)
		}
	}
	return out
}

// lineMatches reports whether a table line starts with id and contains the
// words in order.
func lineMatches(table, id string, words ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != id {
			continue
		}
		i := 1
		for _, w := range words {
			for i < len(f) && f[i] != w {
				i++
			}
			if i == len(f) {
				return false
			}
			i++
		}
		return true
	}
	return false
}

func signalQuiet(h *harness, name string, sig syscall.Signal) error {
	cmd, _ := h.node(name).current()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	return cmd.Process.Signal(sig)
}

// viewWatch is a running `kelpiectl view --watch --format json`.
type viewWatch struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	views  []consensus.View
	bad    []string
	done   chan struct{}
}

func startWatch(t *testing.T, ip string) *viewWatch {
	t.Helper()
	w := &viewWatch{done: make(chan struct{})}
	w.cmd = exec.CommandContext(context.Background(), kelpiectlBin, "--addr", httpURL(ip), "view", "--watch", "--format", "json")
	w.cmd.Env = cleanEnv()
	w.cmd.Stderr = &w.stderr
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill(); <-w.done })
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var v consensus.View
			w.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				w.bad = append(w.bad, sc.Text())
			} else {
				w.views = append(w.views, v)
			}
			w.mu.Unlock()
		}
		_ = w.cmd.Wait()
	}()
	return w
}

// stop interrupts the watcher (Ctrl-C), checks it exited 0, and returns the
// views it printed.
func (w *viewWatch) stop(t *testing.T) []consensus.View {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("view --watch did not stop on SIGINT")
	}
	if w.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("view --watch exit %d after SIGINT; stderr %s", w.cmd.ProcessState.ExitCode(), w.stderr.String())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Errorf("view --watch printed lines that are not a view: %q", w.bad)
	}
	return w.views
}
