package cluster

import (
	"strings"
	"testing"
)

// TestValidID compares ValidID with its definition, byte by byte and at the
// length limits.
func TestValidID(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		s := "a" + string([]byte{byte(c)}) + "z"
		if got := ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, got, want)
		}
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", false},
		{"x", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
	} {
		if got := ValidID(tc.s); got != tc.want {
			t.Errorf("ValidID(%d bytes) = %v, want %v", len(tc.s), got, tc.want)
		}
	}
}
