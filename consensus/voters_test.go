package consensus

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func ids(s ...string) []raft.ServerID {
	out := make([]raft.ServerID, 0, len(s))
	for _, x := range s {
		out = append(out, raft.ServerID(x))
	}
	return out
}

func TestPlanVoters(t *testing.T) {
	cases := []struct {
		name                          string
		target                        int
		leader                        string
		healthy, unhealthy, candidate []string
		promote, demote               []string
	}{
		{name: "steady three", target: 3, leader: "a", healthy: []string{"a", "b", "c"}, candidate: []string{"d"}},
		{name: "bootstrap one, grow to three", target: 3, leader: "a", healthy: []string{"a"}, candidate: []string{"b", "c", "d"},
			promote: []string{"b", "c"}},
		{name: "failed voter replaced", target: 3, leader: "a", healthy: []string{"a", "b"}, unhealthy: []string{"c"},
			candidate: []string{"d"}, promote: []string{"d"}, demote: []string{"c"}},
		{name: "failed voter kept without replacement", target: 3, leader: "a", healthy: []string{"a", "b"},
			unhealthy: []string{"c"}},
		{name: "surplus demoted, never the leader", target: 3, leader: "e", healthy: []string{"a", "b", "c", "d", "e"},
			demote: []string{"d", "c"}},
		{name: "single voter", target: 1, leader: "a", healthy: []string{"a"}, candidate: []string{"b"}},
		{name: "five from three", target: 5, leader: "a", healthy: []string{"a", "b", "c"}, candidate: []string{"d", "e", "f"},
			promote: []string{"d", "e"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := planVoters(c.target, raft.ServerID(c.leader), ids(c.healthy...), ids(c.unhealthy...), ids(c.candidate...))
			if len(got.Promotions) == 0 {
				got.Promotions = nil
			}
			if len(got.Demotions) == 0 {
				got.Demotions = nil
			}
			var wantP, wantD []raft.ServerID
			if c.promote != nil {
				wantP = ids(c.promote...)
			}
			if c.demote != nil {
				wantD = ids(c.demote...)
			}
			if !reflect.DeepEqual(got.Promotions, wantP) || !reflect.DeepEqual(got.Demotions, wantD) {
				t.Fatalf("promote %v demote %v, want %v / %v", got.Promotions, got.Demotions, wantP, wantD)
			}
		})
	}
}
