package cluster

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// Access tokens (ACLs). When Config.ACLToken is set, every write endpoint and
// every internal (node-to-node) endpoint requires it; reads accept it or
// Config.ACLReadToken. Health endpoints stay open for load balancers and
// orchestrators. Tokens travel in X-Kelpie-Token or Authorization: Bearer,
// are compared in constant time and are never logged.

// accessClass is what an endpoint needs.
type accessClass int

const (
	accessPublic   accessClass = iota // health checks
	accessRead                        // reads
	accessWrite                       // operator writes
	accessInternal                    // node-to-node
)

func classify(r *http.Request) accessClass {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/health/"):
		return accessPublic
	case strings.HasPrefix(p, "/v1/internal/"):
		return accessInternal
	case strings.HasPrefix(p, "/debug/"):
		return accessWrite // profiles expose internals
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return accessRead
	}
	return accessWrite
}

// requestToken extracts the presented token.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Kelpie-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func tokenEqual(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// withACL wraps h with the token check (a no-op without ACLToken).
func (n *Node) withACL(h http.Handler) http.Handler {
	write, read := n.cfg.ACLToken, n.cfg.ACLReadToken
	if write == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := classify(r)
		if class == accessPublic {
			h.ServeHTTP(w, r)
			return
		}
		tok := requestToken(r)
		if tok == "" {
			writeJSON(w, http.StatusUnauthorized, ErrorBody{Error: "a token is required (X-Kelpie-Token or Authorization: Bearer)", Code: "unauthorized"})
			return
		}
		isWrite := tokenEqual(tok, write)
		isRead := tokenEqual(tok, read)
		ok := isWrite || (class == accessRead && isRead)
		if !ok {
			msg := "token not valid for this endpoint"
			if isRead {
				msg = "the read-only token cannot do this"
			}
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: msg, Code: "forbidden"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// peerClient returns a client for another node's HTTP API, carrying this
// node's write token and TLS settings.
func (n *Node) peerClient(addr string) (*Client, error) {
	if n.tls != nil && !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	c, err := NewClient(addr, n.peerHTTP)
	if err != nil {
		return nil, err
	}
	c.SetToken(n.cfg.ACLToken)
	return c, nil
}

// TLSConfig configures TLS for the HTTP API and node-to-node traffic (HTTP
// and Raft). All three files are PEM. Every node certificate must carry
// ServerName as a DNS name; nodes verify each other by it (not by IP), and
// node-to-node connections are mutual: each side presents its certificate,
// signed by the CA.
type TLSConfig struct {
	CertFile, KeyFile, CAFile string
	// ServerName every node certificate carries. Default "kelpie".
	ServerName string
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

func (t TLSConfig) validate() error {
	if !t.Enabled() {
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
		return errors.New("TLS needs CertFile, KeyFile and CAFile together")
	}
	return nil
}

// tlsState holds the current certificate and CA pool; Reload swaps them
// atomically so that new connections use new files without a restart.
type tlsState struct {
	cfg  TLSConfig
	cert atomic.Pointer[tls.Certificate]
	pool atomic.Pointer[x509.CertPool]
}

func newTLSState(cfg TLSConfig) (*tlsState, error) {
	if cfg.ServerName == "" {
		cfg.ServerName = "kelpie"
	}
	s := &tlsState{cfg: cfg}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the certificate, key and CA files.
func (s *tlsState) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s / %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	caPEM, err := os.ReadFile(s.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("tls: read CA %s: %w", s.cfg.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("tls: no certificates in CA file %s", s.cfg.CAFile)
	}
	s.cert.Store(&cert)
	s.pool.Store(pool)
	return nil
}

// verifyPeer checks a presented chain against the current CA and the
// cluster's server name.
func (s *tlsState) verifyPeer(rawCerts [][]byte, usage x509.ExtKeyUsage) error {
	if len(rawCerts) == 0 {
		return errors.New("tls: no certificate presented")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("tls: bad certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: s.pool.Load(), Intermediates: inter, DNSName: s.cfg.ServerName,
		KeyUsages: []x509.ExtKeyUsage{usage},
	})
	return err
}

// serverConfig is for the HTTP API: client certificates are requested and,
// when given, verified; internal endpoints additionally require one (see
// requireClientCert). apiOnly=false (Raft) requires and verifies one always.
func (s *tlsState) serverConfig(requireClient bool) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 && !requireClient {
				return nil
			}
			return s.verifyPeer(raw, x509.ExtKeyUsageClientAuth)
		},
	}
	if requireClient {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	return c
}

// clientConfig is for node-to-node connections: present our certificate and
// verify the peer's against the CA and ServerName.
func (s *tlsState) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verification is done below, by ServerName rather than the dialled IP
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.verifyPeer(raw, x509.ExtKeyUsageServerAuth)
		},
	}
}

// requireClientCert guards internal endpoints under TLS: node-to-node calls
// must present a certificate signed by the cluster CA (mutual TLS).
func (n *Node) requireClientCert(h http.Handler) http.Handler {
	if n.tls == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if classify(r) == accessInternal && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: "internal endpoints need a client certificate signed by the cluster CA", Code: "forbidden"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ReloadTLS re-reads the TLS certificate, key and CA files (kelpied calls it
// on SIGHUP). New connections use them; existing ones are unaffected.
func (n *Node) ReloadTLS() error {
	if n.tls == nil {
		return errors.New("TLS is not configured")
	}
	if err := n.tls.Reload(); err != nil {
		return err
	}
	n.logger.Info("TLS certificates reloaded")
	return nil
}

// ClientTLSConfig builds the TLS configuration a tool (kelpiectl) uses to
// talk to a node: trust caFile, present certFile/keyFile if given, and
// verify the node's certificate by serverName (default "kelpie") rather than
// by the address dialled.
func ClientTLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	if serverName == "" {
		serverName = "kelpie"
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tls: no certificates in CA file %s", caFile)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: serverName}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load %s / %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
