package gossip

import (
	"fmt"
	"time"

	"github.com/hashicorp/serf/serf"
)

// EventType says what happened to a member.
type EventType int

// Event types, one per serf member event. The zero value is not a valid
// event type.
const (
	EventJoin   EventType = iota + 1 // a member became alive (new, or back after failing)
	EventLeave                       // a member left gracefully
	EventFailed                      // the failure detector declared a member dead
	EventUpdate                      // a member changed its tags
	EventReap                        // a failed or left member was forgotten (ReconnectTimeout / TombstoneTimeout)
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	case EventReap:
		return "reap"
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// eventTypeFromSerf maps serf member events; ok is false for anything else
// (user events, queries), which this package ignores.
func eventTypeFromSerf(t serf.EventType) (EventType, bool) {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin, true
	case serf.EventMemberLeave:
		return EventLeave, true
	case serf.EventMemberFailed:
		return EventFailed, true
	case serf.EventMemberUpdate:
		return EventUpdate, true
	case serf.EventMemberReap:
		return EventReap, true
	}
	return 0, false
}

// Event is one member event. Member is the member as serf described it in
// the event (for EventReap its Status is the last one before reaping).
type Event struct {
	Type   EventType
	Member Member
	At     time.Time // when this node received it, from Config.Now
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s (%s, %s)", e.Type, e.Member.Name, e.Member.Addr, e.Member.Status)
}
