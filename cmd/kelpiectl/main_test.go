package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

func TestReorderArgs(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		{"place a1 --prefer s2", "place --prefer s2 a1"},
		{"--addr x place a1 --label k=v --label=j=w", "--addr x place --label k=v --label=j=w a1"},
		{"lookup a1 --consistent --format json", "lookup --consistent --format json a1"},
		{"voters remove s3 --force", "voters remove --force s3"},
		{"snapshot save f.snap --format json", "snapshot save --format json f.snap"},
		{"invoke a1 {\"op\":\"incr\"} --timeout 3s", "invoke --timeout 3s a1 {\"op\":\"incr\"}"},
		{"drain n1 -- --odd", "drain n1 -- --odd"},
		{"members --bogus json", "members --bogus json"},
		{"place a1 --generate-bash-completion", "place a1 --generate-bash-completion"},
	} {
		got := strings.Join(reorderArgs(app, append([]string{"kelpiectl"}, strings.Fields(tc.in)...))[1:], " ")
		if got != tc.want {
			t.Errorf("reorder %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--bogus"}, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"place"}, exitUsage},
		{[]string{"place", "a", "b"}, exitUsage},
		{[]string{"place", "a", "--label", "x"}, exitUsage},
		{[]string{"invoke", "a", "not json"}, exitUsage},
		{[]string{"migrate", "a"}, exitUsage},
		{[]string{"migrations", "--state", "done"}, exitUsage},
		{[]string{"status", "--format", "yaml"}, exitUsage},
		{[]string{"snapshot"}, exitUsage},
		{[]string{"keyring", "use"}, exitUsage},
		{[]string{"completion", "fish"}, exitUsage},
		{[]string{"--addr", "http://127.0.0.1:1", "--timeout", "2s", "status"}, exitFailed},
		{[]string{"completion", "bash"}, exitOK},
	} {
		if code := run(context.Background(), append([]string{"kelpiectl"}, tc.args...)); code != tc.code {
			t.Errorf("kelpiectl %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestCheckRemoval(t *testing.T) {
	peers := []consensus.Peer{{ID: "s1", Voter: true}, {ID: "s2", Voter: true}, {ID: "s3", Voter: true}, {ID: "s4"}}
	health := func(healthy ...string) *consensus.VoterState {
		st := &consensus.VoterState{}
		for _, p := range peers {
			st.Servers = append(st.Servers, consensus.ServerState{ID: p.ID, Healthy: strings.Contains(strings.Join(healthy, ","), p.ID)})
		}
		return st
	}
	for _, tc := range []struct {
		name    string
		v       cluster.Voters
		id      string
		force   bool
		wantErr string
	}{
		{"dead voter", cluster.Voters{Peers: peers, Health: health("s1", "s2")}, "s3", false, ""},
		{"healthy voter with one dead", cluster.Voters{Peers: peers, Health: health("s1", "s2")}, "s2", false, "would lose quorum: 1 of 2 remaining voters healthy (s1)"},
		{"forced", cluster.Voters{Peers: peers, Health: health("s1", "s2")}, "s2", true, ""},
		{"all healthy", cluster.Voters{Peers: peers, Health: health("s1", "s2", "s3")}, "s1", false, ""},
		{"standby", cluster.Voters{Peers: peers, Health: health()}, "s4", false, ""},
		{"no health", cluster.Voters{Peers: peers}, "s1", false, "cannot check"},
		{"unknown", cluster.Voters{Peers: peers}, "s9", true, "s9 is not in the Raft configuration (servers: s1, s2, s3, s4)"},
	} {
		err := checkRemoval(&tc.v, tc.id, tc.force)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestMembersSummary(t *testing.T) {
	m := &cluster.Members{Members: []cluster.MemberRow{
		{ID: "a", CommittedStatus: consensus.StatusActive},
		{ID: "b", CommittedStatus: consensus.StatusFailed},
		{ID: "c", CommittedStatus: consensus.StatusActive},
		{ID: "d", CommittedStatus: consensus.StatusLeft},
		{ID: "e", CommittedStatus: consensus.StatusJoining},
		{ID: "f", CommittedStatus: consensus.StatusFailed},
	}}
	if got, want := membersSummary(m), "5: 2 active, 1 joining (e), 2 failed (b, f)"; got != want {
		t.Fatalf("summary = %q, want %q", got, want)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.snap")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != "new" || st.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v", b, st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftovers: %v", entries)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "s.snap"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			if c.Name != "help" && !strings.Contains(c.UsageText, "Example") && len(c.Subcommands) == 0 {
				t.Errorf("%s: no example in its help", name)
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", newApp().Commands)
}

func TestSuggestion(t *testing.T) {
	app := newApp()
	got := suggestion(app, &usageError{err: errString("unknown command \"membres\"")})
	if !reflect.DeepEqual(got, `Did you mean "members"?`) {
		t.Errorf("suggestion = %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestNoLeaderMessage(t *testing.T) {
	row := func(id string, role consensus.Role, raft, gossip string, st consensus.Status) cluster.MemberRow {
		return cluster.MemberRow{ID: id, Role: role, Raft: raft, GossipStatus: gossip, CommittedStatus: st}
	}
	srv, act := consensus.RoleServer, consensus.StatusActive
	isolated := &cluster.Members{Members: []cluster.MemberRow{
		row("c1", consensus.RoleClient, "client", "failed", act),
		row("s1", srv, "voter", "alive", act), row("s2", srv, "voter", "failed", act),
		row("s3", srv, "voter", "failed", act), row("s4", srv, "standby", "alive", act),
		row("s5", srv, "voter", "left", consensus.StatusLeft),
	}}
	s := &cluster.Status{NodeID: "s1", RaftState: "Follower", Epoch: 7}
	want := "s1 knows no leader (Raft state Follower): no quorum: 1 of 3 voters reachable; its committed view (epoch 7) may be stale"
	if got := noLeaderMessage(s, isolated); got != want {
		t.Errorf("isolated server:\n got %q\nwant %q", got, want)
	}
	isolated.Members[2].GossipStatus = "alive"
	if got := reachability(isolated); got != "2 of 3 voters alive by gossip" {
		t.Errorf("quorum alive: %q", got)
	}
	client := &cluster.Members{Members: []cluster.MemberRow{
		row("c1", consensus.RoleClient, "client", "alive", act),
		row("s1", srv, "unknown", "failed", act), row("s2", srv, "unknown", "alive", act),
	}}
	want = "c1 knows no leader: 1 of 2 servers alive by gossip; its committed view (epoch 3) may be stale"
	if got := noLeaderMessage(&cluster.Status{NodeID: "c1", Epoch: 3}, client); got != want {
		t.Errorf("client:\n got %q\nwant %q", got, want)
	}
	if got := noLeaderMessage(&cluster.Status{NodeID: "c1", Epoch: 3}, nil); got != "c1 knows no leader; its committed view (epoch 3) may be stale" {
		t.Errorf("without members: %q", got)
	}
}
