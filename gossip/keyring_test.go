package gossip

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func withKey(key, file string) nodeOpt {
	return func(c *Config) { c.EncryptKey, c.KeyringFile = key, file }
}

// TestEncryptionWrongKeyCannotJoin: nodes sharing a key form a cluster; a
// node with another key (or none) cannot join it, and the cluster is
// unaffected.
func TestEncryptionWrongKeyCannotJoin(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	a := startNode(t, "a", true, withKey(key, filepath.Join(dir, "a.keyring")))
	b := startNode(t, "b", true, withKey(key, filepath.Join(dir, "b.keyring")))
	joinTo(t, b, a)
	waitAllAlive(t, []*node{a, b})

	for _, intruder := range []*node{
		startNode(t, "wrong", true, withKey(newKey(t), "")),
		startNode(t, "plain", true),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := intruder.Join(ctx, []string{a.LocalMember().Addr})
		cancel()
		time.Sleep(500 * time.Millisecond)
		if _, ok := a.Member(intruder.name); ok {
			t.Errorf("%s (join err %v) became a member of the encrypted cluster", intruder.name, err)
		}
	}
	if len(a.Members()) != 2 || statusOf(a.Gossip, "b") != StatusAlive {
		t.Fatalf("cluster affected: %+v", a.Members())
	}
	// The keyring file was written 0600 with the key.
	fi, err := os.Stat(filepath.Join(dir, "a.keyring"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v", fi, err)
	}
}

// TestKeyRotation: install a new key everywhere, make it primary, remove the
// old one; nobody drops out, and the persisted keyring follows.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	oldKey, newK := newKey(t), newKey(t)
	var nodes []*node
	for _, n := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, n, true, withKey(oldKey, filepath.Join(dir, n+".keyring"))))
	}
	for _, n := range nodes[1:] {
		joinTo(t, n, nodes[0])
	}
	waitAllAlive(t, nodes)
	ctx := context.Background()
	for _, step := range []struct {
		op  KeyOp
		key string
	}{{KeyInstall, newK}, {KeyUse, newK}, {KeyRemove, oldKey}} {
		r, err := nodes[1].Keyring(ctx, step.op, step.key)
		if err != nil || r.NumErr != 0 || r.NumResp != 3 {
			t.Fatalf("%s: %+v %v", step.op, r, err)
		}
		waitAllAlive(t, nodes)
	}
	r, err := nodes[2].Keyring(ctx, KeyList, "")
	if err != nil || len(r.Keys) != 1 || r.Keys[newK] != 3 {
		t.Fatalf("list after rotation: %+v %v", r, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "c.keyring"))
	var keys []string
	if json.Unmarshal(b, &keys) != nil || len(keys) != 1 || keys[0] != newK {
		t.Fatalf("persisted keyring %s", b)
	}
	if _, err := nodes[0].Keyring(ctx, KeyInstall, "not-base64!"); err == nil {
		t.Fatal("bad key accepted")
	}
}

func TestLoadKeyringCorrupt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keyring")
	os.WriteFile(p, []byte("{garbage"), 0o600)
	if _, err := loadKeyring(p, ""); err == nil {
		t.Fatal("corrupt keyring accepted")
	}
	if _, err := DecodeKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil {
		t.Fatal("5-byte key accepted")
	}
}
