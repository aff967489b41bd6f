package gossip

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Gossip encryption: memberlist's AES-GCM keyring. The first key of the
// keyring encrypts; all installed keys decrypt, which is what makes rotation
// possible (install everywhere → use everywhere → remove the old one). serf
// writes the keyring file on every change; we load it at start so that a
// restarted node comes back with the keys the cluster rotated to.

// ErrBadKey: an encryption key is not base64 of 16, 24 or 32 bytes.
var ErrBadKey = errors.New("gossip: encryption key must be base64 of 16, 24 or 32 bytes")

// DecodeKey decodes and checks a base64 key.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%w: got %d bytes", ErrBadKey, len(k))
}

// loadKeyring builds the keyring from the keyring file (serf's format: a
// JSON array of base64 keys, primary first), or from the initial key when
// the file does not exist yet, in which case the file is written (0600).
// It returns nil when neither is given (no encryption).
func loadKeyring(path, initial string) (*memberlist.Keyring, error) {
	var keys [][]byte
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			var encoded []string
			if err := json.Unmarshal(b, &encoded); err != nil || len(encoded) == 0 {
				return nil, fmt.Errorf("gossip: keyring file %s is corrupt (want a JSON array of base64 keys): %v", path, err)
			}
			for _, e := range encoded {
				k, err := DecodeKey(e)
				if err != nil {
					return nil, fmt.Errorf("gossip: keyring file %s: %w", path, err)
				}
				keys = append(keys, k)
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("gossip: read keyring file %s: %w", path, err)
		}
	}
	if len(keys) == 0 && initial != "" {
		k, err := DecodeKey(initial)
		if err != nil {
			return nil, err
		}
		keys = [][]byte{k}
		if path != "" {
			if err := writeKeyring(path, keys); err != nil {
				return nil, err
			}
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return memberlist.NewKeyring(keys, keys[0])
}

func writeKeyring(path string, keys [][]byte) error {
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, _ := json.Marshal(encoded)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("gossip: keyring dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("gossip: write keyring: %w", err)
	}
	return os.Rename(tmp, path)
}

// KeyringResponse is the cluster-wide answer of a keyring operation.
type KeyringResponse struct {
	// Keys maps each installed key to how many nodes have it (list only).
	Keys map[string]int `json:"keys,omitempty"`
	// PrimaryKeys maps each primary key to how many nodes use it (list only).
	PrimaryKeys map[string]int `json:"primary_keys,omitempty"`
	NumNodes    int            `json:"num_nodes"`
	NumResp     int            `json:"num_resp"`
	NumErr      int            `json:"num_err"`
	// Messages holds per-node errors.
	Messages map[string]string `json:"messages,omitempty"`
}

func keyResp(r *serf.KeyResponse) KeyringResponse {
	if r == nil {
		return KeyringResponse{}
	}
	return KeyringResponse{Keys: r.Keys, PrimaryKeys: r.PrimaryKeys, NumNodes: r.NumNodes, NumResp: r.NumResp, NumErr: r.NumErr, Messages: r.Messages}
}

// KeyOp is a keyring operation.
type KeyOp string

const (
	KeyList    KeyOp = "list"
	KeyInstall KeyOp = "install"
	KeyUse     KeyOp = "use"
	KeyRemove  KeyOp = "remove"
)

// Keyring runs a keyring operation across the cluster (serf queries every
// member and reports how many acknowledged). key is ignored for list.
func (g *Gossip) Keyring(ctx context.Context, op KeyOp, key string) (KeyringResponse, error) {
	g.mu.Lock()
	s, err := g.runningLocked()
	g.mu.Unlock()
	if err != nil {
		return KeyringResponse{}, err
	}
	if !s.EncryptionEnabled() {
		return KeyringResponse{}, errors.New("gossip: encryption is not enabled on this node (start it with an encryption key)")
	}
	if op != KeyList {
		if _, err := DecodeKey(key); err != nil {
			return KeyringResponse{}, err
		}
	}
	type result struct {
		r   *serf.KeyResponse
		err error
	}
	done := make(chan result, 1)
	go func() {
		km := s.KeyManager()
		var r *serf.KeyResponse
		var err error
		switch op {
		case KeyList:
			r, err = km.ListKeys()
		case KeyInstall:
			r, err = km.InstallKey(key)
		case KeyUse:
			r, err = km.UseKey(key)
		case KeyRemove:
			r, err = km.RemoveKey(key)
		default:
			err = fmt.Errorf("gossip: unknown keyring operation %q", op)
		}
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		out := keyResp(res.r)
		if res.err != nil {
			return out, fmt.Errorf("gossip: keyring %s: %w", op, res.err)
		}
		return out, nil
	case <-ctx.Done():
		return KeyringResponse{}, ctx.Err()
	}
}
