package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// signalNode sends sig to a node's process by PID.
func signalNode(t *testing.T, h *harness, name string, sig syscall.Signal) {
	t.Helper()
	cmd, _ := h.node(name).current()
	if cmd == nil || cmd.Process == nil {
		t.Fatalf("%s is not running", name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", name, err)
	}
}

type invokeAnswer struct {
	Node  string `json:"node"`
	Token uint64 `json:"token"`
	Body  struct {
		Value int64 `json:"value"`
	} `json:"body"`
}

func invokeVia(c *cluster.Client, actor, op string) (invokeAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := c.Invoke(ctx, actor, json.RawMessage(fmt.Sprintf(`{"op":%q}`, op)))
	if err != nil {
		return invokeAnswer{}, err
	}
	var a invokeAnswer
	a.Node, a.Token = res.Node, res.Token
	err = json.Unmarshal(res.Body, &a.Body)
	return a, err
}

// TestProcessLeaseSafety_SigstopLongerThanLease: a node owning an actor is
// frozen (SIGSTOP) for longer than its lease. The others re-place the actor
// after the lease surely expired; when the node wakes (SIGCONT) it does not
// serve its old actor, and work carrying the old token is refused.
//
// IPs 127.0.0.190-193.
func TestProcessLeaseSafety_SigstopLongerThanLease(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	names := []string{"s1", "s2", "s3"}
	ips := []string{"127.0.0.190", "127.0.0.191", "127.0.0.192"}
	startServers(h, names, ips)
	h.start(nodeOpts{Name: "c1", IP: "127.0.0.193", Join: []string{gossipAddr(ips[0])}})
	all := append(append([]string{}, names...), "c1")
	waitSameView(t, h, all, formTimeout, "all Active", func(v consensus.View) bool {
		for _, n := range all {
			if m, ok := v.Member(n); !ok || m.Status != consensus.StatusActive {
				return false
			}
		}
		return true
	})

	// Put the actor on c1 and use it.
	var placed cluster.PlaceResult
	waitFor(t, 30*time.Second, "place on c1", func() (bool, string) {
		ctx, cancel := reqCtx()
		defer cancel()
		r, err := h.client("s2").Place(ctx, "sleepy", cluster.PlaceOptions{Prefer: "c1"})
		placed = r
		return err == nil && r.Placement.Node == "c1", fmt.Sprintf("%+v %v", r, err)
	})
	for i := 1; i <= 3; i++ {
		a, err := invokeVia(h.client("s1"), "sleepy", "incr")
		if err != nil || a.Node != "c1" || a.Body.Value != int64(i) {
			t.Fatalf("incr %d: %+v %v", i, a, err)
		}
	}
	oldToken := placed.Placement.Token

	// Freeze c1 for much longer than its lease (4s + 1s margin by default).
	signalNode(t, h, "c1", syscall.SIGSTOP)
	frozen := time.Now()
	var moved invokeAnswer
	waitFor(t, 60*time.Second, "actor served again elsewhere", func() (bool, string) {
		a, err := invokeVia(h.client("s3"), "sleepy", "incr")
		moved = a
		return err == nil && a.Node != "c1", fmt.Sprintf("%+v %v", a, err)
	})
	t.Logf("served again on %s (token %d > %d) %s after SIGSTOP", moved.Node, moved.Token, oldToken, time.Since(frozen).Round(time.Millisecond))
	if moved.Token <= oldToken {
		t.Fatalf("new token %d not above old %d", moved.Token, oldToken)
	}
	if time.Since(frozen) < 10*time.Second {
		time.Sleep(10*time.Second - time.Since(frozen))
	}

	// Wake it. Work stamped with the old token goes straight to the owner
	// endpoint and must be refused.
	signalNode(t, h, "c1", syscall.SIGCONT)
	req, _ := http.NewRequest(http.MethodPost, httpURL("127.0.0.193")+fmt.Sprintf("/v1/internal/invoke/sleepy?token=%d", oldToken), strings.NewReader(`{"op":"get"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("old-token request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("woken node served work with the old token %d: %s", oldToken, body)
	}
	t.Logf("old token refused by the woken node: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))

	// Requests through the woken node reach the new owner, never c1.
	waitFor(t, 60*time.Second, "woken node routes to the new owner", func() (bool, string) {
		a, err := invokeVia(h.client("c1"), "sleepy", "get")
		if err == nil && a.Node == "c1" && a.Token == oldToken {
			t.Fatalf("woken node served its old activation: %+v", a)
		}
		return err == nil && a.Node != "c1", fmt.Sprintf("%+v %v", a, err)
	})
	// And its demo host holds nothing under the old token any more.
	var acts struct {
		Active []string `json:"active"`
	}
	waitFor(t, 20*time.Second, "woken node deactivated its old actor", func() (bool, string) {
		resp, err := http.Get(httpURL("127.0.0.193") + "/v1/demo/activations")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&acts); err != nil {
			return false, err.Error()
		}
		return len(acts.Active) == 0, fmt.Sprint(acts.Active)
	})
}
