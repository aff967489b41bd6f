package gossip

import (
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/serf/serf"
)

func TestTagsRoundTrip(t *testing.T) {
	full := Tags{Role: RoleServer, HTTPAddr: "10.0.0.1:8500", RaftAddr: "10.0.0.1:8300", Zone: "eu-1a", Version: "1.2.3", Boot: "b0a7", Expect: "3"}
	cases := map[string]Tags{"full": full, "client only": {Role: RoleClient}, "empty": {}}
	for name, tags := range cases {
		if got := TagsFromMap(tags.Map()); got != tags {
			t.Errorf("%s: round trip gave %+v, want %+v", name, got, tags)
		}
	}
	m := full.Map()
	want := map[string]string{"role": "server", "http": "10.0.0.1:8500", "raft": "10.0.0.1:8300", "zone": "eu-1a", "ver": "1.2.3", "boot": "b0a7", "expect": "3"}
	if len(m) != len(want) {
		t.Fatalf("Map() = %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("Map()[%q] = %q, want %q", k, m[k], v)
		}
	}
	if got := len((Tags{Role: RoleClient}).Map()); got != 1 {
		t.Errorf("empty fields are encoded: %d keys", got)
	}
	if got := TagsFromMap(map[string]string{"role": "client", "future": "x"}); got != (Tags{Role: RoleClient}) {
		t.Errorf("unknown keys not ignored: %+v", got)
	}
	if TagsFromMap(nil) != (Tags{}) {
		t.Error("TagsFromMap(nil) is not zero")
	}
}

func TestStrings(t *testing.T) {
	statuses := map[Status]string{StatusUnknown: "unknown", StatusAlive: "alive", StatusLeaving: "leaving", StatusLeft: "left", StatusFailed: "failed", 42: "status(42)"}
	for s, want := range statuses {
		if s.String() != want {
			t.Errorf("Status(%d) = %q, want %q", int(s), s.String(), want)
		}
	}
	types := map[EventType]string{EventJoin: "join", EventLeave: "leave", EventFailed: "failed", EventUpdate: "update", EventReap: "reap", 0: "event(0)"}
	for e, want := range types {
		if e.String() != want {
			t.Errorf("EventType(%d) = %q, want %q", int(e), e.String(), want)
		}
	}
}

func TestSerfMappings(t *testing.T) {
	for in, want := range map[serf.EventType]EventType{
		serf.EventMemberJoin: EventJoin, serf.EventMemberLeave: EventLeave, serf.EventMemberFailed: EventFailed,
		serf.EventMemberUpdate: EventUpdate, serf.EventMemberReap: EventReap,
	} {
		if got, ok := eventTypeFromSerf(in); !ok || got != want {
			t.Errorf("%v -> %v, %v", in, got, ok)
		}
	}
	for _, in := range []serf.EventType{serf.EventUser, serf.EventQuery} {
		if _, ok := eventTypeFromSerf(in); ok {
			t.Errorf("%v mapped to a member event", in)
		}
	}
	for in, want := range map[serf.MemberStatus]Status{
		serf.StatusNone: StatusUnknown, serf.StatusAlive: StatusAlive, serf.StatusLeaving: StatusLeaving,
		serf.StatusLeft: StatusLeft, serf.StatusFailed: StatusFailed,
	} {
		if got := statusFromSerf(in); got != want {
			t.Errorf("%v -> %v, want %v", in, got, want)
		}
	}
	m := memberFromSerf(serf.Member{Name: "a", Addr: net.ParseIP("127.0.0.5"), Port: 7946,
		Tags: map[string]string{"role": "server"}, Status: serf.StatusFailed})
	want := Member{Name: "a", Addr: "127.0.0.5:7946", Tags: Tags{Role: RoleServer}, Status: StatusFailed}
	if m != want {
		t.Errorf("memberFromSerf = %+v, want %+v", m, want)
	}
}

func TestParseLibLine(t *testing.T) {
	cases := []struct {
		in        string
		level     slog.Level
		component string
		msg       string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.2:1\n", slog.LevelDebug, "memberlist", "Stream connection from=127.0.0.2:1"},
		{"[INFO] serf: EventMemberJoin: a 127.0.0.2", slog.LevelInfo, "serf", "EventMemberJoin: a 127.0.0.2"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "memberlist", "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelError, "memberlist", "Failed to send ping"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "", "Failed to shutdown transport: x"},
		{"[TRACE] serf: x", slog.LevelDebug, "serf", "x"},
		{"no prefix at all", slog.LevelInfo, "", "no prefix at all"},
		{"[weird] thing", slog.LevelInfo, "", "[weird] thing"},
	}
	for _, tc := range cases {
		level, comp, msg := parseLibLine(tc.in)
		if level != tc.level || comp != tc.component || msg != tc.msg {
			t.Errorf("parseLibLine(%q) = %v, %q, %q; want %v, %q, %q", tc.in, level, comp, msg, tc.level, tc.component, tc.msg)
		}
	}
}
