package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kelpie/cluster/placement"
)

func (n *Node) placementRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/placements/{actor}", n.handlePlace)
	mux.HandleFunc("GET /v1/placements/{actor}", n.handleLookup)
	mux.HandleFunc("DELETE /v1/placements/{actor}", n.handleRelease)
	mux.HandleFunc("GET /v1/placements", n.handlePlacements)
	mux.HandleFunc("POST /v1/actors/{actor}/invoke", n.handleInvoke)
	mux.HandleFunc("POST /v1/internal/lease", n.handleLease)
	mux.HandleFunc("POST /v1/internal/invoke/{actor}", n.handleOwnerInvoke)
	mux.HandleFunc("POST /v1/internal/deactivate", n.handleDeactivate)
}

func (n *Node) handlePlace(w http.ResponseWriter, r *http.Request) {
	var opts PlaceOptions
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &opts); err != nil {
			writeError(w, err)
			return
		}
	}
	if opts.Prefer != "" && !ValidID(opts.Prefer) {
		writeError(w, fmt.Errorf("%w: prefer %q", ErrInvalidArgument, opts.Prefer))
		return
	}
	res, err := n.Place(r.Context(), r.PathValue("actor"), opts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (n *Node) handleLookup(w http.ResponseWriter, r *http.Request) {
	actor := r.PathValue("actor")
	q := r.URL.Query()
	var minIndex uint64
	if s := q.Get("min_index"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: min_index %q", ErrInvalidArgument, s))
			return
		}
		minIndex = v
	}
	var res LookupResult
	var err error
	switch {
	case q.Has("consistent") && q.Get("consistent") != "false":
		res, err = n.LookupConsistent(r.Context(), actor)
	case minIndex > 0 && n.fsm != nil:
		if err = validateActor(actor); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			res, err = n.waitPlacement(ctx, actor, minIndex)
			cancel()
		}
	default:
		res, err = n.Lookup(r.Context(), actor)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if !res.Found {
		code = http.StatusNotFound
		w.Header().Set("X-Kelpie-Index", strconv.FormatUint(res.Index, 10))
		writeJSON(w, code, ErrorBody{Error: fmt.Sprintf("actor %q is not placed (as of index %d)", actor, res.Index), Code: "not_placed"})
		return
	}
	w.Header().Set("X-Kelpie-Index", strconv.FormatUint(res.Index, 10))
	writeJSON(w, code, res)
}

func (n *Node) handleRelease(w http.ResponseWriter, r *http.Request) {
	if err := n.Release(r.Context(), r.PathValue("actor")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "released"})
}

func (n *Node) handlePlacements(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node != "" && !ValidID(node) {
		writeError(w, fmt.Errorf("%w: node %q", ErrInvalidArgument, node))
		return
	}
	l, err := n.PlacementsOn(r.Context(), node)
	if err != nil {
		writeError(w, err)
		return
	}
	if l.Placements == nil {
		l.Placements = []placement.Placement{}
	}
	writeJSON(w, http.StatusOK, l)
}

// readRaw reads a size-limited JSON request body as raw bytes.
func readRaw(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: request body: %v", ErrInvalidArgument, err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: request body is not JSON", ErrInvalidArgument)
	}
	return b, nil
}

func (n *Node) handleInvoke(w http.ResponseWriter, r *http.Request) {
	body, err := readRaw(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := n.Invoke(r.Context(), r.PathValue("actor"), body)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (n *Node) handleLease(w http.ResponseWriter, r *http.Request) {
	var req leaseRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	var g leaseGrant
	var err error
	if n.raft != nil && n.raft.IsLeader() {
		g, err = n.grantLease(r.Context(), req)
	} else {
		err = n.forward(r.Context(), func(ctx context.Context, c *Client) error {
			gg, err := c.lease(ctx, req)
			g = gg
			return err
		})
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (n *Node) handleOwnerInvoke(w http.ResponseWriter, r *http.Request) {
	actor := r.PathValue("actor")
	token, err := strconv.ParseUint(r.URL.Query().Get("token"), 10, 64)
	if err != nil || token == 0 {
		writeError(w, fmt.Errorf("%w: token %q", ErrInvalidArgument, r.URL.Query().Get("token")))
		return
	}
	if err := validateActor(actor); err != nil {
		writeError(w, err)
		return
	}
	body, err := readRaw(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := n.serveInvoke(r.Context(), actor, token, body)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (n *Node) handleDeactivate(w http.ResponseWriter, r *http.Request) {
	var req deactivateRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := validateActor(req.Actor); err != nil || req.Token == 0 {
		writeError(w, fmt.Errorf("%w: actor %q token %d", ErrInvalidArgument, req.Actor, req.Token))
		return
	}
	state, was, err := n.actors.deactivate(r.Context(), req.Actor, req.Token, "released")
	if err != nil {
		writeError(w, err)
		return
	}
	n.pcache.drop(req.Actor)
	writeJSON(w, http.StatusOK, deactivateResponse{State: state, Active: was})
}

// errorCode maps placement-service errors for writeError.
func placementErrorCode(err error) (int, string, bool) {
	switch {
	case errors.Is(err, ErrStaleToken):
		return http.StatusConflict, "stale_token", true
	case errors.Is(err, ErrMigrating):
		return http.StatusServiceUnavailable, "migrating", true
	case errors.Is(err, ErrNotOwner):
		return http.StatusConflict, "not_owner", true
	case errors.Is(err, ErrNotPlaced):
		return http.StatusNotFound, "not_placed", true
	case errors.Is(err, ErrFenced):
		return http.StatusServiceUnavailable, "fenced", true
	case errors.Is(err, ErrLeasePending):
		return http.StatusServiceUnavailable, "lease_pending", true
	case errors.Is(err, ErrNoCapacity):
		return http.StatusServiceUnavailable, "no_capacity", true
	case errors.Is(err, ErrNoEligibleNode):
		return http.StatusServiceUnavailable, "no_eligible_node", true
	case errors.Is(err, ErrNoHost):
		return http.StatusNotImplemented, "no_host", true
	case errors.Is(err, ErrUnknownOutcome):
		return http.StatusGatewayTimeout, "unknown_outcome", true
	case errors.Is(err, errOwnerUnreachable):
		return http.StatusServiceUnavailable, "owner_unreachable", true
	}
	return 0, "", false
}
