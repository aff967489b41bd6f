package cluster

import (
	"net/http/httptest"
	"testing"
)

// TestClassify: what each kind of endpoint needs when ACLs are on. The
// profiler (kelpied --enable-debug) needs the write token even for GET.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         accessClass
	}{
		{"GET", "/v1/health/ready", accessPublic},
		{"GET", "/v1/internal/raft-health", accessInternal},
		{"POST", "/v1/internal/leave", accessInternal},
		{"GET", "/v1/view", accessRead},
		{"GET", "/metrics", accessRead},
		{"PUT", "/v1/placements/a", accessWrite},
		{"GET", "/debug/pprof/", accessWrite},
		{"GET", "/debug/pprof/profile", accessWrite},
	} {
		if got := classify(httptest.NewRequest(c.method, c.path, nil)); got != c.want {
			t.Errorf("%s %s: class %d, want %d", c.method, c.path, got, c.want)
		}
	}
}
