package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// CodecVersion is the version byte written at the front of every command.
// A replica refuses (ErrInvalidCommand) any command carrying another version,
// so the format can only change together with a new version number.
const CodecVersion = 1

// MaxPayloadSize is the largest JSON payload, in bytes, that DecodeCommand
// accepts (and that Encode produces): 1 MiB. A membership or placement
// command is a few hundred bytes per entry, so this leaves room for large
// batches while bounding what a corrupt log entry can make a replica parse.
const MaxPayloadSize = 1 << 20

// headerSize is the version byte plus the type byte.
const headerSize = 2

// maxIDLen is the longest member ID, in bytes.
const maxIDLen = 128

// ErrInvalidCommand means that command bytes could not be decoded or failed
// validation: bad header, unknown version or type, malformed or oversized
// JSON, or a payload that breaks the rules of its command type. The FSM
// rejects such a log entry without changing state. Retrying the same bytes
// never helps; the proposer has a bug or the data is corrupt.
var ErrInvalidCommand = errors.New("consensus: invalid command")

// CommandType identifies the payload that follows the header.
type CommandType uint8

// Command types. Zero is deliberately unused so that a zeroed header never
// decodes. New types are added here and in newPayload (the one place that
// maps a type to its payload) and handled in FSM.Apply.
const (
	// CmdViewChange carries a ViewChange: a batch of member status and
	// metadata changes committed as one view epoch.
	CmdViewChange CommandType = 1
)

func (t CommandType) String() string {
	switch t {
	case CmdViewChange:
		return "view-change"
	case CmdPlace:
		return "place"
	case CmdRelease:
		return "release"
	case CmdMigrationStart:
		return "migration-start"
	case CmdMigrationCommit:
		return "migration-commit"
	case CmdMigrationAbort:
		return "migration-abort"
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// Change is one member's desired record; Member.Status is the target status.
//
// Incarnation, JoinedAt, UpdatedAt, UpdatedEpoch and Reason of Member are
// owned by the FSM and ignored when the change is applied.
type Change struct {
	Member Member `json:"member"`
}

// ViewChange is a batch of changes applied in order and committed as a single
// epoch. If any change is illegal the whole batch is rejected.
type ViewChange struct {
	Changes []Change `json:"changes"`
	// Reason is recorded on every member the command changes, e.g.
	// "reconcile", "join", "leave", "failed".
	Reason string `json:"reason,omitempty"`
	// ProposedAtUnixNano is the proposer's wall-clock time, stamped before
	// proposing. It is informational only: the FSM never reads a clock.
	ProposedAtUnixNano int64 `json:"proposed_at"`
}

// Validate checks the shape of a ViewChange without looking at any state: at
// least one change; every member has a valid ID (1..128 bytes of
// [A-Za-z0-9._-]), a known role, and a target status from Joining to Left.
// Errors wrap ErrInvalidCommand.
func (vc ViewChange) Validate() error {
	if len(vc.Changes) == 0 {
		return fmt.Errorf("%w: view change has no changes", ErrInvalidCommand)
	}
	for i, c := range vc.Changes {
		m := c.Member
		if err := validateID(m.ID); err != nil {
			return fmt.Errorf("%w: change %d: %v", ErrInvalidCommand, i, err)
		}
		if m.Role != RoleServer && m.Role != RoleClient {
			return fmt.Errorf("%w: change %d (%s): unknown role %q", ErrInvalidCommand, i, m.ID, m.Role)
		}
		if m.Status < StatusJoining || m.Status > StatusLeft {
			return fmt.Errorf("%w: change %d (%s): invalid target status %s", ErrInvalidCommand, i, m.ID, m.Status)
		}
	}
	return nil
}

// validateID checks a member ID: 1..maxIDLen bytes of [A-Za-z0-9._-].
func validateID(id string) error {
	if id == "" {
		return errors.New("empty member id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("member id longer than %d bytes", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("member id %q: byte %d (%q) not in [A-Za-z0-9._-]", id, i, c)
		}
	}
	return nil
}

// payload is implemented by pointers to command payload types.
type payload interface {
	Validate() error
	// value returns the payload as a value (not a pointer), which is what
	// DecodeCommand hands out.
	value() any
}

func (vc *ViewChange) value() any { return *vc }

// newPayload returns a fresh, empty payload for t, or false if t is unknown.
// This is the single registry of command types: adding a command means adding
// a case here (and a handler in FSM.Apply).
func newPayload(t CommandType) (payload, bool) {
	switch t {
	case CmdViewChange:
		return new(ViewChange), true
	case CmdPlace:
		return new(PlaceBatch), true
	case CmdRelease:
		return new(ReleaseBatch), true
	case CmdMigrationStart:
		return new(MigrationStart), true
	case CmdMigrationCommit, CmdMigrationAbort:
		return new(MigrationEnd), true
	}
	return nil, false
}

// Encode builds the wire form of a command: byte 0 is CodecVersion, byte 1
// the type, the rest the JSON encoding of payload. The result is decoded
// again before it is returned, so Encode never produces bytes that a replica
// would reject as invalid; a payload of the wrong shape for t, one that fails
// validation, or one larger than MaxPayloadSize is an error wrapping
// ErrInvalidCommand.
func Encode(t CommandType, p any) ([]byte, error) {
	if _, ok := newPayload(t); !ok {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, uint8(t))
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalidCommand, t, err)
	}
	b := make([]byte, 0, headerSize+len(body))
	b = append(b, CodecVersion, byte(t))
	b = append(b, body...)
	if _, _, err := DecodeCommand(b); err != nil {
		return nil, err
	}
	return b, nil
}

// EncodeViewChange is Encode(CmdViewChange, vc).
func EncodeViewChange(vc ViewChange) ([]byte, error) {
	return Encode(CmdViewChange, vc)
}

// DecodeCommand parses and validates command bytes. For CmdViewChange the
// returned payload is a ViewChange (a value, not a pointer). It rejects
// short input, an unknown version or type, invalid JSON, unknown JSON
// fields, trailing data after the JSON value and payloads larger than
// MaxPayloadSize; every error wraps ErrInvalidCommand. It never panics.
func DecodeCommand(b []byte) (CommandType, any, error) {
	if len(b) < headerSize {
		return 0, nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrInvalidCommand, len(b), headerSize)
	}
	if b[0] != CodecVersion {
		return 0, nil, fmt.Errorf("%w: unknown codec version %d (want %d)", ErrInvalidCommand, b[0], CodecVersion)
	}
	t := CommandType(b[1])
	p, ok := newPayload(t)
	if !ok {
		return 0, nil, fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, b[1])
	}
	body := b[headerSize:]
	if len(body) > MaxPayloadSize {
		return 0, nil, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrInvalidCommand, len(body), MaxPayloadSize)
	}
	if t == CmdPlace {
		if pb, ok := decodePlaceFast(body); ok {
			if err := pb.Validate(); err != nil {
				return 0, nil, err
			}
			return t, pb, nil
		}
	}
	if err := decodeStrictJSON(body, p); err != nil {
		return 0, nil, fmt.Errorf("%w: %s: %v", ErrInvalidCommand, t, err)
	}
	if err := p.Validate(); err != nil {
		return 0, nil, err
	}
	return t, p.value(), nil
}

// decodeStrictJSON decodes exactly one JSON value from b into v, refusing
// unknown fields and anything but whitespace after the value.
func decodeStrictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return expectEOF(dec)
}

// expectEOF reports an error unless dec has nothing but whitespace left.
func expectEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return errors.New("trailing data after JSON value")
		}
		return fmt.Errorf("trailing data after JSON value: %v", err)
	}
	return nil
}
