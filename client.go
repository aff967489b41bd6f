package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/migration"
)

// Client talks to one node's HTTP API. It is what kelpiectl and nodes
// themselves (forwarding, following the view) use. Safe for concurrent use.
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// NewClient returns a client for the node at addr ("host:port" or a full
// "http://host:port" URL). A nil hc uses a default client without timeout
// (deadlines come from each call's context).
func NewClient(addr string, hc *http.Client) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: empty address", ErrInvalidArgument)
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: bad address %q", ErrInvalidArgument, addr)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), hc: hc}, nil
}

// SetToken sets the access token sent with every request.
func (c *Client) SetToken(t string) { c.token = t }

// Addr is the base URL.
func (c *Client) Addr() string { return c.base }

// APIError is a non-2xx answer. It matches the sentinel for its code with
// errors.Is (no_quorum → ErrNoQuorum, ...).
type APIError struct {
	StatusCode int
	Body       ErrorBody
}

func (e *APIError) Error() string {
	if e.Body.Error != "" {
		return e.Body.Error
	}
	return fmt.Sprintf("http %d", e.StatusCode)
}

// Unwrap maps the code to a sentinel.
func (e *APIError) Unwrap() error {
	switch e.Body.Code {
	case "no_quorum":
		return &NoQuorumError{Reachable: e.Body.Reachable, Total: e.Body.Total}
	case "not_leader":
		return ErrNotLeader
	case "not_ready":
		return ErrNotReady
	case "unknown_node":
		return ErrUnknownNode
	case "not_member":
		return ErrNotMember
	case "invalid_argument":
		return ErrInvalidArgument
	case "not_server":
		return ErrNotServer
	case "stale_token":
		return ErrStaleToken
	case "not_owner":
		return ErrNotOwner
	case "migrating":
		return ErrMigrating
	case "not_placed":
		return ErrNotPlaced
	case "fenced":
		return ErrFenced
	case "lease_pending":
		return ErrLeasePending
	case "no_capacity":
		return ErrNoCapacity
	case "no_eligible_node":
		return ErrNoEligibleNode
	case "no_host":
		return ErrNoHost
	case "unknown_outcome":
		return ErrUnknownOutcome
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Kelpie-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = fmt.Sprintf("http %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return resp.Header, ae
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	_, err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return &s, err
}

// Members returns GET /v1/members.
func (c *Client) Members(ctx context.Context) (*Members, error) {
	var m Members
	_, err := c.do(ctx, http.MethodGet, "/v1/members", nil, &m)
	return &m, err
}

// View returns the committed view. With index > 0 it is a blocking query:
// the answer comes once the view's index exceeds index, or after wait.
func (c *Client) View(ctx context.Context, index uint64, wait time.Duration) (consensus.View, error) {
	var v consensus.View
	q := url.Values{}
	if index > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	path := "/v1/view"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

// viewSince is View for a follower holding base: with a blocking query on
// base.Index it asks for a delta and applies it to base (base is not
// modified). A delta that does not fit base (which a correct server never
// sends) is answered by fetching the whole view.
func (c *Client) viewSince(ctx context.Context, base consensus.View, wait time.Duration) (consensus.View, error) {
	if base.Index == 0 {
		return c.View(ctx, 0, wait)
	}
	q := url.Values{}
	q.Set("index", strconv.FormatUint(base.Index, 10))
	q.Set("delta", "1")
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var d viewDelta
	if _, err := c.do(ctx, http.MethodGet, "/v1/view?"+q.Encode(), nil, &d); err != nil {
		return consensus.View{}, err
	}
	if v, ok := applyDelta(base, d); ok {
		return v, nil
	}
	return c.View(ctx, 0, 0)
}

// Leader returns GET /v1/leader.
func (c *Client) Leader(ctx context.Context) (*LeaderInfo, error) {
	var l LeaderInfo
	_, err := c.do(ctx, http.MethodGet, "/v1/leader", nil, &l)
	return &l, err
}

// Voters returns GET /v1/voters.
func (c *Client) Voters(ctx context.Context) (*Voters, error) {
	var v Voters
	_, err := c.do(ctx, http.MethodGet, "/v1/voters", nil, &v)
	return &v, err
}

// Ready returns nil when GET /v1/health/ready answers 200.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/v1/health/ready", nil, nil)
	return err
}

func (c *Client) leave(ctx context.Context, req leaveRequest) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/leave", req, nil)
	return err
}

func (c *Client) raftHealth(ctx context.Context) (consensus.RaftHealth, error) {
	var h consensus.RaftHealth
	_, err := c.do(ctx, http.MethodGet, "/v1/internal/raft-health", nil, &h)
	return h, err
}

// isTransport reports whether err is a failure to talk at all (as opposed to
// an answer).
func isTransport(err error) bool {
	var ae *APIError
	return err != nil && !errors.As(err, &ae)
}

// Place asks for actor to be placed (PUT /v1/placements/{actor}).
func (c *Client) Place(ctx context.Context, actor string, opts PlaceOptions) (PlaceResult, error) {
	var r PlaceResult
	_, err := c.do(ctx, http.MethodPut, "/v1/placements/"+url.PathEscape(actor), opts, &r)
	return r, err
}

// Lookup reads actor's placement (GET /v1/placements/{actor}); consistent
// asks the leader to verify its leadership first; minIndex > 0 makes the
// server wait until its replica has applied that index.
func (c *Client) Lookup(ctx context.Context, actor string, consistent bool, minIndex uint64) (LookupResult, error) {
	q := url.Values{}
	if consistent {
		q.Set("consistent", "true")
	}
	if minIndex > 0 {
		q.Set("min_index", strconv.FormatUint(minIndex, 10))
	}
	path := "/v1/placements/" + url.PathEscape(actor)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r LookupResult
	h, err := c.do(ctx, http.MethodGet, path, nil, &r)
	var ae *APIError
	if errors.As(err, &ae) && ae.Body.Code == "not_placed" {
		// Not placed is an answer, not a failure.
		idx, _ := strconv.ParseUint(h.Get("X-Kelpie-Index"), 10, 64)
		return LookupResult{Found: false, Index: idx}, nil
	}
	return r, err
}

// Placements lists placements, all or those on node (GET /v1/placements).
func (c *Client) Placements(ctx context.Context, node string) (PlacementList, error) {
	path := "/v1/placements"
	if node != "" {
		path += "?node=" + url.QueryEscape(node)
	}
	var r PlacementList
	_, err := c.do(ctx, http.MethodGet, path, nil, &r)
	return r, err
}

// Release removes actor's placement (DELETE /v1/placements/{actor}).
func (c *Client) Release(ctx context.Context, actor string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/placements/"+url.PathEscape(actor), nil, nil)
	return err
}

// Invoke sends a request to an actor through any node
// (POST /v1/actors/{id}/invoke); body is the host's JSON request.
func (c *Client) Invoke(ctx context.Context, actor string, body json.RawMessage) (InvokeResult, error) {
	var r InvokeResult
	_, err := c.do(ctx, http.MethodPost, "/v1/actors/"+url.PathEscape(actor)+"/invoke", body, &r)
	return r, err
}

func (c *Client) lease(ctx context.Context, req leaseRequest) (leaseGrant, error) {
	var g leaseGrant
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/lease", req, &g)
	return g, err
}

func (c *Client) invokeOwner(ctx context.Context, actor string, token uint64, req []byte) (InvokeResult, error) {
	var r InvokeResult
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/invoke/"+url.PathEscape(actor)+"?token="+strconv.FormatUint(token, 10),
		json.RawMessage(req), &r)
	return r, err
}

func (c *Client) deactivate(ctx context.Context, req deactivateRequest) (deactivateResponse, error) {
	var r deactivateResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/deactivate", req, &r)
	return r, err
}

// Migrate asks for actor to move to node to (POST /v1/migrations).
func (c *Client) Migrate(ctx context.Context, actor, to string) (MigrationOutcome, error) {
	var o MigrationOutcome
	_, err := c.do(ctx, http.MethodPost, "/v1/migrations", migrateRequest{Actor: actor, To: to}, &o)
	return o, err
}

// Migrations lists migrations, optionally by state (GET /v1/migrations).
func (c *Client) Migrations(ctx context.Context, state string) ([]MigrationInfo, error) {
	path := "/v1/migrations"
	if state != "" {
		path += "?state=" + url.QueryEscape(state)
	}
	var r struct {
		Migrations []MigrationInfo `json:"migrations"`
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, &r)
	return r.Migrations, err
}

// Drain migrates every actor off node (POST /v1/nodes/{id}/drain). An
// incomplete drain returns what it did together with an error, so that a
// node forwarding the call can relay the result.
func (c *Client) Drain(ctx context.Context, node string) (DrainResult, error) {
	// Pass our remaining time on, less a margin for the answer to come
	// back, so the server stops draining before we stop waiting.
	var budget time.Duration
	if dl, ok := ctx.Deadline(); ok {
		budget = max(time.Until(dl)-500*time.Millisecond, 100*time.Millisecond)
	}
	r, err := c.DrainNode(ctx, node, budget)
	if err == nil && len(r.Failed) > 0 {
		err = fmt.Errorf("drain of %s: %d actors still there", node, len(r.Failed))
	}
	return r, err
}

func (c *Client) handoff(ctx context.Context, req handoffRequest) (migration.Receipt, error) {
	var rc migration.Receipt
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/migrate/handoff", req, &rc)
	return rc, err
}

func (c *Client) activate(ctx context.Context, req activateRequest) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/internal/migrate/activate", req, nil)
	return err
}

// stage streams a transfer frame to the target.
func (c *Client) stage(ctx context.Context, frame io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/internal/migrate/stage", frame)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.token != "" {
		req.Header.Set("X-Kelpie-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		ae := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = fmt.Sprintf("http %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return ae
	}
	return nil
}

// Keyring runs a gossip keyring operation: op is "list", "install", "use"
// or "remove" (GET/POST/PUT/DELETE /v1/keyring).
func (c *Client) Keyring(ctx context.Context, op, key string) (KeyringResponse, error) {
	var r KeyringResponse
	var body any
	method := http.MethodGet
	switch op {
	case "list":
	case "install":
		method, body = http.MethodPost, keyRequest{Key: key}
	case "use":
		method, body = http.MethodPut, keyRequest{Key: key}
	case "remove":
		method, body = http.MethodDelete, keyRequest{Key: key}
	default:
		return r, fmt.Errorf("%w: keyring operation %q (want list, install, use or remove)", ErrInvalidArgument, op)
	}
	_, err := c.do(ctx, method, "/v1/keyring", body, &r)
	return r, err
}
