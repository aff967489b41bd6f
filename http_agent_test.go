package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// httpDo sends one request and decodes the JSON answer into out (an
// ErrorBody for errors); it returns the status code.
func httpDo(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: decode: %v", method, url, err)
	}
	return resp.StatusCode
}

// TestAgentLeave: POST /v1/agent/leave makes the node leave gracefully and
// only then closes its LeftCh.
func TestAgentLeave(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	select {
	case <-c1.LeftCh():
		t.Fatal("LeftCh closed before any leave")
	default:
	}

	var res AgentLeaveResult
	if code := httpDo(t, http.MethodPost, "http://"+c1.HTTPAddr()+"/v1/agent/leave", &res); code != http.StatusOK || res != (AgentLeaveResult{Status: "left", Node: "c1"}) {
		t.Fatalf("leave: %d %+v", code, res)
	}
	select {
	case <-c1.LeftCh():
	case <-time.After(5 * time.Second):
		t.Fatal("LeftCh not closed after the API leave")
	}
	if m, _ := tc.node("s1").fsm.View().Member("c1"); m.Status != consensus.StatusLeft {
		t.Fatalf("c1 on the leader's state: %+v, want Left", m)
	}
	select {
	case <-tc.node("s1").LeftCh():
		t.Fatal("another node's LeftCh closed")
	default:
	}
	tc.stop("c1")
}

// TestRemoveVoter: DELETE /v1/voters/{id} takes a dead server out of the
// Raft configuration through any server, and rejects unknown and malformed
// IDs.
func TestRemoveVoter(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	var eb ErrorBody
	base := "http://" + tc.node("s1").HTTPAddr()
	if code := httpDo(t, http.MethodDelete, base+"/v1/voters/ghost", &eb); code != http.StatusNotFound || eb.Code != "unknown_node" {
		t.Errorf("unknown id: %d %+v", code, eb)
	}
	if code := httpDo(t, http.MethodDelete, base+"/v1/voters/bad%20id", &eb); code != http.StatusBadRequest || eb.Code != "invalid_argument" {
		t.Errorf("bad id: %d %+v", code, eb)
	}

	tc.stop("s3")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := NewClient(tc.node("s2").HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out VoterRemoval
	waitFor(t, 15*time.Second, "s3 removed", func() bool {
		out, err = cl.RemoveVoter(ctx, "s3")
		return err == nil
	})
	if out.Removed != "s3" || !out.WasVoter || len(out.Peers) != 2 || out.Peers[0].ID != "s1" || out.Peers[1].ID != "s2" {
		t.Fatalf("removal = %+v", out)
	}
	waitFor(t, 5*time.Second, "both servers see two peers", func() bool {
		for _, id := range []string{"s1", "s2"} {
			if peers, err := tc.node(id).raft.Configuration(); err != nil || len(peers) != 2 {
				return false
			}
		}
		return true
	})
}
