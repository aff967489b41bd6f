package netx

import (
	"net"
	"sync"
)

// Filter decides whether traffic may flow from one IP to another. A nil
// Filter allows everything.
type Filter interface {
	// Allow reports whether packets sent by src may reach dst. Both are bare
	// IP strings as printed by net.IP.String.
	Allow(src, dst string) bool
}

// Faults is an in-memory Filter with partition helpers. The zero value
// allows everything.
type Faults struct {
	mu      sync.RWMutex
	blocked map[[2]string]bool
}

// NewFaults returns a Faults that allows everything.
func NewFaults() *Faults { return &Faults{} }

// Allow implements Filter.
func (f *Faults) Allow(src, dst string) bool {
	if f == nil {
		return true
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return !f.blocked[[2]string{src, dst}]
}

// BlockOneWay drops everything sent from src to dst.
func (f *Faults) BlockOneWay(src, dst string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked == nil {
		f.blocked = make(map[[2]string]bool)
	}
	f.blocked[[2]string{src, dst}] = true
}

// Partition cuts every link between group a and group b, both directions.
func (f *Faults) Partition(a, b []string) {
	for _, x := range a {
		for _, y := range b {
			f.BlockOneWay(x, y)
			f.BlockOneWay(y, x)
		}
	}
}

// Isolate cuts ip off from every address in others, both directions.
func (f *Faults) Isolate(ip string, others []string) {
	f.Partition([]string{ip}, others)
}

// Heal removes every rule.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = nil
}

// allow is Filter.Allow tolerant of a nil filter.
func allow(f Filter, src, dst string) bool {
	return f == nil || f.Allow(src, dst)
}

// Allowed reports whether f lets src reach dst; nil allows everything.
func Allowed(f Filter, src, dst net.Addr) bool {
	return allow(f, HostIP(src), HostIP(dst))
}

// HostIP returns the IP part of a net.Addr as a string ("" if unknown).
func HostIP(a net.Addr) string {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.IP.String()
	case *net.UDPAddr:
		return v.IP.String()
	case nil:
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
