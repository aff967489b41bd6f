package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Client methods for the operator endpoints (http_agent.go,
// http_snapshot.go) and a drain call that keeps the partial result.

// AgentLeave makes the node at the client's address leave the cluster
// gracefully (POST /v1/agent/leave); the agent then stops.
func (c *Client) AgentLeave(ctx context.Context) (AgentLeaveResult, error) {
	var r AgentLeaveResult
	_, err := c.do(ctx, http.MethodPost, "/v1/agent/leave", nil, &r)
	return r, err
}

// RemoveVoter takes server id out of the Raft configuration
// (DELETE /v1/voters/{id}). It does not check quorum; see Node.RemoveVoter.
func (c *Client) RemoveVoter(ctx context.Context, id string) (VoterRemoval, error) {
	var r VoterRemoval
	_, err := c.do(ctx, http.MethodDelete, "/v1/voters/"+url.PathEscape(id), nil, &r)
	return r, err
}

// DrainNode is Drain with a server-side bound (0: none) that also returns
// what an incomplete drain did: the API answers 409 with the DrainResult
// when actors remain on the node, and DrainNode returns that result with a
// nil error (check Failed).
func (c *Client) DrainNode(ctx context.Context, node string, timeout time.Duration) (DrainResult, error) {
	path := "/v1/nodes/" + url.PathEscape(node) + "/drain"
	if timeout > 0 {
		path += "?timeout=" + url.QueryEscape(timeout.String())
	}
	var r DrainResult
	resp, err := c.rawAccept(ctx, http.MethodPost, path, nil, "", http.StatusConflict)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode POST %s: %w", path, err)
	}
	if r.Node == "" && resp.StatusCode == http.StatusConflict {
		// A 409 that is not a drain result is an ordinary error answer.
		var eb ErrorBody
		_ = json.Unmarshal(b, &eb)
		return r, &APIError{StatusCode: resp.StatusCode, Body: eb}
	}
	return r, nil
}

// SnapshotOptions tune Client.Snapshot.
type SnapshotOptions struct {
	// Stale lets any server answer from its own replica instead of the
	// leader.
	Stale bool
	// Progress, if set, is called as bytes arrive with the count so far and
	// the total (-1 if unknown).
	Progress func(done, total int64)
}

// SnapshotDownload describes a saved snapshot.
type SnapshotDownload struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // hex, of the document
	Index  uint64 `json:"index"`  // Raft index the serving node had applied
}

// ErrSnapshotChecksum: the downloaded snapshot does not match the checksum
// the node sent; the download is corrupt. Retry.
var ErrSnapshotChecksum = errors.New("snapshot checksum mismatch")

// Snapshot streams the snapshot document of the committed state
// (GET /v1/snapshot) into w and checks it against the checksum the node
// sent.
func (c *Client) Snapshot(ctx context.Context, w io.Writer, opts SnapshotOptions) (SnapshotDownload, error) {
	path := "/v1/snapshot"
	if opts.Stale {
		path += "?stale=true"
	}
	resp, err := c.raw(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return SnapshotDownload{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	var dst io.Writer = io.MultiWriter(w, h)
	if opts.Progress != nil {
		dst = &progressWriter{w: dst, total: resp.ContentLength, fn: opts.Progress}
		opts.Progress(0, resp.ContentLength)
	}
	n, err := io.Copy(dst, resp.Body)
	if err != nil {
		return SnapshotDownload{}, fmt.Errorf("read snapshot: %w", err)
	}
	d := SnapshotDownload{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	d.Index, _ = strconv.ParseUint(resp.Header.Get(headerIndex), 10, 64)
	if want := resp.Header.Get(headerSnapshotSHA256); want != "" && want != d.SHA256 {
		return d, fmt.Errorf("%w: got %s, node sent %s", ErrSnapshotChecksum, d.SHA256, want)
	}
	return d, nil
}

// RestoreSnapshot uploads a snapshot document (PUT /v1/snapshot) and
// restores it cluster-wide.
func (c *Client) RestoreSnapshot(ctx context.Context, doc io.Reader) (SnapshotRestoreResult, error) {
	var r SnapshotRestoreResult
	resp, err := c.raw(ctx, http.MethodPut, "/v1/snapshot", doc, "application/json")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode PUT /v1/snapshot: %w", err)
	}
	return r, nil
}

// raw sends a request and returns the response if it is a 2xx; otherwise it
// returns the *APIError (the body is consumed and closed).
func (c *Client) raw(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	return c.rawAccept(ctx, method, path, body, contentType)
}

// rawAccept is raw that also returns responses with the listed codes.
func (c *Client) rawAccept(ctx context.Context, method, path string, body io.Reader, contentType string, accept ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("X-Kelpie-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 && !slices.Contains(accept, resp.StatusCode) {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		ae := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = fmt.Sprintf("http %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil, ae
	}
	return resp, nil
}

type progressWriter struct {
	w     io.Writer
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}
