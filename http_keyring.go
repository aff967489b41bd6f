package cluster

import (
	"context"
	"fmt"
	"net/http"

	"github.com/kelpie/cluster/gossip"
)

// KeyringResponse is the answer of the keyring endpoints: how many nodes
// answered and, for a list, which keys each node has.
type KeyringResponse = gossip.KeyringResponse

// keyRequest is the body of POST/PUT/DELETE /v1/keyring.
type keyRequest struct {
	Key string `json:"key"`
}

// Keyring runs a gossip keyring operation across the cluster: list, install,
// use or remove. Rotation is install (everywhere) → use → remove the old key.
func (n *Node) Keyring(ctx context.Context, op gossip.KeyOp, key string) (KeyringResponse, error) {
	if op != gossip.KeyList {
		if _, err := gossip.DecodeKey(key); err != nil {
			return KeyringResponse{}, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
	}
	return n.gossip.Keyring(ctx, op, key)
}

func (n *Node) keyringRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/keyring", func(w http.ResponseWriter, r *http.Request) {
		n.serveKeyring(w, r, gossip.KeyList, "")
	})
	for method, op := range map[string]gossip.KeyOp{"POST": gossip.KeyInstall, "PUT": gossip.KeyUse, "DELETE": gossip.KeyRemove} {
		mux.HandleFunc(method+" /v1/keyring", func(w http.ResponseWriter, r *http.Request) {
			var req keyRequest
			if err := decodeBody(w, r, &req); err != nil {
				writeError(w, err)
				return
			}
			n.serveKeyring(w, r, op, req.Key)
		})
	}
}

func (n *Node) serveKeyring(w http.ResponseWriter, r *http.Request, op gossip.KeyOp, key string) {
	res, err := n.Keyring(r.Context(), op, key)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
