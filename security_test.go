package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// testCA issues certificates for tests.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return ca
}

// issue writes a node certificate (server and client auth, DNS name
// "kelpie") and returns the cert and key paths.
func (ca *testCA) issue(t *testing.T, name string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames:    []string{"kelpie"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cf, kf
}

const (
	writeTok = "write-token-0123456789"
	readTok  = "read-token-9876543210"
)

func secure(ca *testCA, t *testing.T, name string) func(*Config) {
	cf, kf := ca.issue(t, name)
	return func(c *Config) {
		c.TLS = TLSConfig{CertFile: cf, KeyFile: kf, CAFile: ca.file}
		c.ACLToken, c.ACLReadToken = writeTok, readTok
	}
}

// TestSecurity_EndpointTokenMatrix: with TLS and tokens on, every endpoint ×
// {no token, wrong token, read token, write token}: only the right
// combination gets through; the rest get 401/403 with a JSON error.
func TestSecurity_EndpointTokenMatrix(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "good")
	tc := newTestCluster(t)
	var ns []*Node
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("s%d", i)
		ns = append(ns, tc.start(id, nodeOpts{server: true, expect: 3, mutate: secure(ca, t, id)}))
	}
	for i, n := range ns {
		var seeds []string
		if i > 0 {
			seeds = []string{ns[0].GossipAddr()}
		}
		go n.Join(context.Background(), seeds)
	}
	waitFor(t, 30*time.Second, "secure cluster forms (mTLS raft + node-to-node HTTP)", func() bool {
		return converged(ns, statuses([]string{"s1", "s2", "s3"}, consensus.StatusActive))
	})
	// An actor to read.
	waitFor(t, 10*time.Second, "leases", func() bool { return ns[0].LeaseRemaining() > 0 && ns[1].LeaseRemaining() > 0 })
	if _, err := ns[1].Place(context.Background(), "secret-actor", PlaceOptions{}); err != nil {
		t.Fatal(err)
	}

	tlsCfg, err := ClientTLSConfig(ca.file, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	base := "https://" + ns[0].HTTPAddr()
	type ep struct {
		method, path, body string
		class              accessClass
	}
	eps := []ep{
		{"GET", "/v1/health/live", "", accessPublic},
		{"GET", "/v1/health/ready", "", accessPublic},
		{"GET", "/v1/status", "", accessRead},
		{"GET", "/v1/members", "", accessRead},
		{"GET", "/v1/view", "", accessRead},
		{"GET", "/v1/leader", "", accessRead},
		{"GET", "/v1/voters", "", accessRead},
		{"GET", "/metrics", "", accessRead},
		{"GET", "/v1/placements", "", accessRead},
		{"GET", "/v1/placements/secret-actor", "", accessRead},
		{"GET", "/v1/migrations", "", accessRead},
		{"GET", "/v1/keyring", "", accessRead},
		{"PUT", "/v1/placements/matrix-actor", "{}", accessWrite},
		{"DELETE", "/v1/placements/nope-actor", "", accessWrite},
		{"POST", "/v1/actors/matrix-actor/invoke", `{"op":"get"}`, accessWrite},
		{"POST", "/v1/migrations", `{"actor":"nope-actor","to":"s2"}`, accessWrite},
		{"POST", "/v1/nodes/s3/drain?timeout=1s", "", accessWrite},
		{"POST", "/v1/keyring", `{"key":"bad"}`, accessWrite},
		{"POST", "/v1/internal/lease", `{}`, accessInternal},
		{"GET", "/v1/internal/raft-health", "", accessInternal},
		{"POST", "/v1/internal/leave", `{}`, accessInternal},
		{"POST", "/v1/internal/deactivate", `{}`, accessInternal},
		{"POST", "/v1/internal/invoke/x?token=1", `{}`, accessInternal},
		{"POST", "/v1/internal/migrate/handoff", `{}`, accessInternal},
		{"POST", "/v1/internal/migrate/stage", ``, accessInternal},
		{"POST", "/v1/internal/migrate/activate", `{}`, accessInternal},
	}
	tokens := map[string]string{"none": "", "wrong": "nope", "read": readTok, "write": writeTok}
	for _, e := range eps {
		for name, tok := range tokens {
			req, _ := http.NewRequest(e.method, base+e.path, strings.NewReader(e.body))
			if tok != "" {
				if name == "read" {
					req.Header.Set("Authorization", "Bearer "+tok)
				} else {
					req.Header.Set("X-Kelpie-Token", tok)
				}
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", e.method, e.path, err)
			}
			var body ErrorBody
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			allowed := e.class == accessPublic || name == "write" && e.class != accessInternal || name == "read" && e.class == accessRead
			denied := resp.StatusCode == 401 || resp.StatusCode == 403
			switch {
			case allowed && denied:
				t.Errorf("%s %s with %s token: denied %d %+v", e.method, e.path, name, resp.StatusCode, body)
			case !allowed && !denied:
				t.Errorf("%s %s with %s token: got %d, want 401/403", e.method, e.path, name, resp.StatusCode)
			case !allowed && (body.Error == "" || body.Code == ""):
				t.Errorf("%s %s with %s token: no JSON error body", e.method, e.path, name)
			case !allowed && name == "none" && resp.StatusCode != 401:
				t.Errorf("%s %s without token: %d, want 401", e.method, e.path, resp.StatusCode)
			}
		}
	}
	// Internal endpoints also need a client certificate: the write token
	// alone (what an operator holds) is not enough.
	req, _ := http.NewRequest("GET", base+"/v1/internal/raft-health", nil)
	req.Header.Set("X-Kelpie-Token", writeTok)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Errorf("internal endpoint without client cert: %v %v", resp.StatusCode, err)
	}
	// Plain HTTP gets nothing from a TLS listener.
	if resp, err := http.Get("http://" + ns[0].HTTPAddr() + "/v1/status"); err == nil {
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS API: %d, want 400", resp.StatusCode)
		}
		resp.Body.Close()
	}

	// A server whose certificate comes from another CA cannot join; the
	// cluster is unaffected.
	evil := newTestCA(t, dir, "evil")
	intruder := tc.start("s4", nodeOpts{server: true, mutate: secure(evil, t, "s4")})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	if err := intruder.Join(ctx, []string{ns[0].GossipAddr()}); err == nil {
		t.Fatal("server with a foreign certificate joined")
	}
	peers, _ := tc.waitLeader().raft.Configuration()
	for _, p := range peers {
		if p.ID == "s4" {
			t.Errorf("intruder in the raft configuration")
		}
	}
	if !converged(ns, statuses([]string{"s1", "s2", "s3"}, consensus.StatusActive)) {
		t.Error("cluster disturbed by the intruder")
	}
}
