package consensus

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func member(id string, s Status) Member {
	return Member{
		ID:         id,
		GossipAddr: "127.0.0.1:7946",
		HTTPAddr:   "127.0.0.1:8500",
		Role:       RoleClient,
		Status:     s,
	}
}

func viewChange(reason string, ms ...Member) ViewChange {
	vc := ViewChange{Reason: reason, ProposedAtUnixNano: 1700000000000000000}
	for _, m := range ms {
		vc.Changes = append(vc.Changes, Change{Member: m})
	}
	return vc
}

func mustEncode(t testing.TB, vc ViewChange) []byte {
	t.Helper()
	b, err := EncodeViewChange(vc)
	if err != nil {
		t.Fatalf("EncodeViewChange: %v", err)
	}
	return b
}

// rawCommand builds command bytes with an arbitrary header and body.
func rawCommand(version, typ byte, body string) []byte {
	return append([]byte{version, typ}, body...)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	srv := member("srv-1", StatusJoining)
	srv.Role = RoleServer
	srv.RaftAddr = "127.0.0.2:8300"
	srv.Zone = "eu-west-1a"
	srv.Version = "v1.2.3"
	vc := viewChange("join", srv, member("c.2_x-Y", StatusFailed))

	b, err := EncodeViewChange(vc)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != CodecVersion || CommandType(b[1]) != CmdViewChange {
		t.Fatalf("header = %v, want [%d %d]", b[:2], CodecVersion, CmdViewChange)
	}
	typ, p, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if typ != CmdViewChange {
		t.Fatalf("type = %v, want %v", typ, CmdViewChange)
	}
	got, ok := p.(ViewChange)
	if !ok {
		t.Fatalf("payload is %T, want ViewChange", p)
	}
	if !reflect.DeepEqual(got, vc) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, vc)
	}

	// Encode with a pointer payload produces the same bytes.
	b2, err := Encode(CmdViewChange, &vc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("Encode(&vc) = %q, want %q", b2, b)
	}
}

func TestEncodeRejects(t *testing.T) {
	valid := viewChange("join", member("a", StatusJoining))
	cases := []struct {
		name string
		typ  CommandType
		p    any
	}{
		{"unknown type 0", 0, valid},
		{"unknown type 2", 2, valid},
		{"unknown type 255", 255, valid},
		{"nil payload", CmdViewChange, nil},
		{"wrong payload shape", CmdViewChange, map[string]int{"changes": 1}},
		{"extra field", CmdViewChange, map[string]any{"changes": valid.Changes, "bogus": true}},
		{"unmarshalable payload", CmdViewChange, make(chan int)},
		{"empty changes", CmdViewChange, ViewChange{Reason: "join"}},
		{"invalid change", CmdViewChange, viewChange("join", member("", StatusJoining))},
		{"too large", CmdViewChange, ViewChange{
			Changes: valid.Changes,
			Reason:  strings.Repeat("x", MaxPayloadSize),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.typ, tc.p)
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Encode = %q, %v; want ErrInvalidCommand", b, err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := `{"changes":[{"member":{"id":"a","gossip_addr":"x","http_addr":"y","role":"client","status":"joining"}}],"proposed_at":1}`
	if _, _, err := DecodeCommand(rawCommand(CodecVersion, byte(CmdViewChange), ok)); err != nil {
		t.Fatalf("baseline command does not decode: %v", err)
	}
	withMember := func(fields string) string {
		return `{"changes":[{"member":{` + fields + `}}]}`
	}
	bigReason := `{"changes":[{"member":{"id":"a","role":"client","status":"joining"}}],"reason":"` +
		strings.Repeat("x", MaxPayloadSize) + `"}`

	cases := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version only", []byte{CodecVersion}},
		{"header only", []byte{CodecVersion, byte(CmdViewChange)}},
		{"version 0", rawCommand(0, byte(CmdViewChange), ok)},
		{"version 2", rawCommand(2, byte(CmdViewChange), ok)},
		{"version 255", rawCommand(255, byte(CmdViewChange), ok)},
		{"type 0", rawCommand(CodecVersion, 0, ok)},
		{"type 2", rawCommand(CodecVersion, 2, ok)},
		{"type 255", rawCommand(CodecVersion, 255, ok)},
		{"not json", rawCommand(CodecVersion, byte(CmdViewChange), "hello")},
		{"truncated json", rawCommand(CodecVersion, byte(CmdViewChange), ok[:len(ok)-1])},
		{"json null", rawCommand(CodecVersion, byte(CmdViewChange), "null")},
		{"json array", rawCommand(CodecVersion, byte(CmdViewChange), "[]")},
		{"json string", rawCommand(CodecVersion, byte(CmdViewChange), `"x"`)},
		{"empty object", rawCommand(CodecVersion, byte(CmdViewChange), "{}")},
		{"null changes", rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":null}`)},
		{"empty changes", rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[]}`)},
		{"null change", rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[null]}`)},
		{"unknown top-level field", rawCommand(CodecVersion, byte(CmdViewChange), ok[:len(ok)-1]+`,"x":1}`)},
		{"unknown change field", rawCommand(CodecVersion, byte(CmdViewChange),
			`{"changes":[{"member":{"id":"a","role":"client","status":"joining"},"x":1}]}`)},
		{"unknown member field", rawCommand(CodecVersion, byte(CmdViewChange),
			withMember(`"id":"a","role":"client","status":"joining","color":"red"`))},
		{"trailing object", rawCommand(CodecVersion, byte(CmdViewChange), ok+"{}")},
		{"trailing garbage", rawCommand(CodecVersion, byte(CmdViewChange), ok+"x")},
		{"trailing bracket", rawCommand(CodecVersion, byte(CmdViewChange), ok+"]")},
		{"two values", rawCommand(CodecVersion, byte(CmdViewChange), ok+" "+ok)},
		{"payload over 1 MiB", rawCommand(CodecVersion, byte(CmdViewChange), bigReason)},
		{"whitespace over 1 MiB", rawCommand(CodecVersion, byte(CmdViewChange), ok+strings.Repeat(" ", MaxPayloadSize))},
		{"empty id", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"","role":"client","status":"joining"`))},
		{"missing id", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"role":"client","status":"joining"`))},
		{"id with space", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a b","role":"client","status":"joining"`))},
		{"id with slash", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a/b","role":"client","status":"joining"`))},
		{"id non-ascii", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"nöde","role":"client","status":"joining"`))},
		{"id 129 bytes", rawCommand(CodecVersion, byte(CmdViewChange),
			withMember(`"id":"`+strings.Repeat("a", 129)+`","role":"client","status":"joining"`))},
		{"missing role", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","status":"joining"`))},
		{"unknown role", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"voter","status":"joining"`))},
		{"role wrong case", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"Server","status":"joining"`))},
		{"missing status", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"client"`))},
		{"status none", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"client","status":"none"`))},
		{"status unknown name", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"client","status":"dead"`))},
		{"status as number", rawCommand(CodecVersion, byte(CmdViewChange), withMember(`"id":"a","role":"client","status":1`))},
		{"incarnation negative", rawCommand(CodecVersion, byte(CmdViewChange),
			withMember(`"id":"a","role":"client","status":"joining","incarnation":-1`))},
		{"proposed_at not a number", rawCommand(CodecVersion, byte(CmdViewChange),
			`{"changes":[{"member":{"id":"a","role":"client","status":"joining"}}],"proposed_at":"now"}`)},
		{"second change invalid", rawCommand(CodecVersion, byte(CmdViewChange),
			`{"changes":[{"member":{"id":"a","role":"client","status":"joining"}},{"member":{"id":"","role":"client","status":"joining"}}]}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ, p, err := DecodeCommand(tc.b)
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("DecodeCommand = %v, %v, %v; want ErrInvalidCommand", typ, p, err)
			}
			if p != nil {
				t.Fatalf("payload %v returned with error", p)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		name string
		body string
	}{
		{"trailing whitespace", `{"changes":[{"member":{"id":"a","role":"client","status":"joining"}}]} ` + "\n\t"},
		{"leading whitespace", ` {"changes":[{"member":{"id":"a","role":"client","status":"joining"}}]}`},
		{"id 128 bytes", `{"changes":[{"member":{"id":"` + strings.Repeat("a", 128) + `","role":"client","status":"joining"}}]}`},
		{"id all classes", `{"changes":[{"member":{"id":"AZaz09._-","role":"server","status":"left"}}]}`},
		{"fsm-owned fields present", `{"changes":[{"member":{"id":"a","role":"client","status":"joining","incarnation":7,"joined_at":3,"updated_at":4,"updated_epoch":5,"reason":"x"}}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := DecodeCommand(rawCommand(CodecVersion, byte(CmdViewChange), tc.body)); err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
		})
	}
}

func TestViewChangeValidateStatuses(t *testing.T) {
	for s := Status(0); s <= StatusLeft+1; s++ {
		t.Run(s.String(), func(t *testing.T) {
			err := viewChange("x", member("a", s)).Validate()
			valid := s >= StatusJoining && s <= StatusLeft
			if valid && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !valid && !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Validate = %v, want ErrInvalidCommand", err)
			}
		})
	}
}

func TestCommandTypeString(t *testing.T) {
	if got := CmdViewChange.String(); got != "view-change" {
		t.Errorf("CmdViewChange.String() = %q", got)
	}
	if got := CommandType(9).String(); got != "command(9)" {
		t.Errorf("CommandType(9).String() = %q", got)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{CodecVersion, byte(CmdViewChange)})
	f.Add(mustEncode(f, viewChange("join", member("a", StatusJoining))))
	f.Add(mustEncode(f, viewChange("batch", member("a", StatusJoining), member("a", StatusActive), member("b", StatusLeft))))
	f.Add(rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[{"member":{"id":"a","role":"client","status":"joining"}}]}x`))
	f.Add(rawCommand(CodecVersion, byte(CmdViewChange), `{"changes":[{"member":{"id":"a","role":"client","status":"none"}}]}`))
	f.Add(rawCommand(2, byte(CmdViewChange), `{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, p, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v does not wrap ErrInvalidCommand", err)
			}
			if p != nil {
				t.Fatalf("payload %v returned with error", p)
			}
			return
		}
		// Anything that decodes re-encodes to something that decodes to the
		// same value.
		b2, err := Encode(typ, p)
		if err != nil {
			t.Fatalf("re-encode of decoded %#v: %v", p, err)
		}
		typ2, p2, err := DecodeCommand(b2)
		if err != nil {
			t.Fatalf("decode of re-encoded %q: %v", b2, err)
		}
		if typ2 != typ || !reflect.DeepEqual(p2, p) {
			t.Fatalf("round trip changed the command:\n got %v %#v\nwant %v %#v", typ2, p2, typ, p)
		}
	})
}
