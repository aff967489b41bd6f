package gossip

import (
	"fmt"
	"net"
	"strconv"

	"github.com/hashicorp/serf/serf"
)

// Serf tag keys. They are part of the wire format between nodes: never
// rename one without a compatibility plan.
const (
	TagRole     = "role"
	TagHTTPAddr = "http"
	TagRaftAddr = "raft"
	TagZone     = "zone"
	TagVersion  = "ver"
	TagBoot     = "boot"
	TagExpect   = "expect"
	TagCapacity = "cap"
	TagLabels   = "labels"
)

// Roles a node can advertise in Tags.Role.
const (
	// RoleServer runs Raft and may become a voter.
	RoleServer = "server"
	// RoleClient only gossips; it forwards writes to the leader.
	RoleClient = "client"
)

// Tags is what a node advertises about itself through gossip. Every field
// travels in every alive message, so keep values short: serf limits the
// encoded tags to 512 bytes (memberlist.MetaMaxSize).
type Tags struct {
	Role     string // RoleServer or RoleClient
	HTTPAddr string // host:port of the HTTP API
	RaftAddr string // host:port of the Raft transport (servers only)
	Zone     string // failure domain, e.g. a rack or availability zone
	Version  string // build version
	Boot     string // process incarnation: a random ID chosen when the node starts
	Expect   string // bootstrap-expect of a server ("" or "0" when not bootstrapping)
	Capacity string // most actors the node will host ("" = unlimited)
	Labels   string // placement labels, "k=v,k2=v2"
}

// Map encodes t as serf tags. Empty fields are omitted, which keeps the
// encoded size small; TagsFromMap reads a missing key as "".
func (t Tags) Map() map[string]string {
	m := make(map[string]string, 5)
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put(TagRole, t.Role)
	put(TagHTTPAddr, t.HTTPAddr)
	put(TagRaftAddr, t.RaftAddr)
	put(TagZone, t.Zone)
	put(TagVersion, t.Version)
	put(TagBoot, t.Boot)
	put(TagExpect, t.Expect)
	put(TagCapacity, t.Capacity)
	put(TagLabels, t.Labels)
	return m
}

// TagsFromMap decodes serf tags. Unknown keys are ignored so that newer
// nodes can add tags without breaking older ones.
func TagsFromMap(m map[string]string) Tags {
	return Tags{
		Role:     m[TagRole],
		HTTPAddr: m[TagHTTPAddr],
		RaftAddr: m[TagRaftAddr],
		Zone:     m[TagZone],
		Version:  m[TagVersion],
		Boot:     m[TagBoot],
		Expect:   m[TagExpect],
		Capacity: m[TagCapacity],
		Labels:   m[TagLabels],
	}
}

// encodedSizeBound is an upper bound of the size serf gives t once encoded
// (a magic byte plus a msgpack map; each string costs at most 3 header bytes
// while it is shorter than 64 KiB).
func (t Tags) encodedSizeBound() int {
	n := 1 + 3
	for k, v := range t.Map() {
		n += 3 + len(k) + 3 + len(v)
	}
	return n
}

// Status is a member's gossip status.
type Status int

// Gossip statuses. The zero value is StatusUnknown so that a zero Member is
// never mistaken for an alive one.
const (
	StatusUnknown Status = iota
	StatusAlive          // answering probes
	StatusLeaving        // announced a graceful leave, not yet left
	StatusLeft           // left gracefully; kept until TombstoneTimeout
	StatusFailed         // declared dead by the failure detector; kept until ReconnectTimeout
)

func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	case StatusUnknown:
		return "unknown"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

func statusFromSerf(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	}
	return StatusUnknown
}

// Member is one node as gossip sees it.
type Member struct {
	Name   string
	Addr   string // ip:port of its gossip endpoint (UDP and TCP)
	Tags   Tags
	Status Status
}

// IsServer reports whether the member advertises RoleServer.
func (m Member) IsServer() bool { return m.Tags.Role == RoleServer }

func memberFromSerf(m serf.Member) Member {
	addr := ""
	if m.Addr != nil {
		addr = net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	}
	return Member{
		Name:   m.Name,
		Addr:   addr,
		Tags:   TagsFromMap(m.Tags),
		Status: statusFromSerf(m.Status),
	}
}
