package migration

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 1024, 3 << 20} {
		state := bytes.Repeat([]byte{0xab, 0x01, 0x7f}, size/3+1)[:size]
		var buf bytes.Buffer
		if err := WriteFrame(&buf, Header{Migration: 7, Actor: "a"}, state, false); err != nil {
			t.Fatal(err)
		}
		h, got, err := ReadFrame(&buf, 4<<20)
		if err != nil || h.Actor != "a" || h.Migration != 7 || h.Size != int64(size) || !bytes.Equal(got, state) {
			t.Fatalf("size %d: %+v err %v", size, h, err)
		}
	}
}

func TestFrameRejects(t *testing.T) {
	var good bytes.Buffer
	WriteFrame(&good, Header{Migration: 1, Actor: "a"}, []byte("hello state"), false)
	var corrupt bytes.Buffer
	WriteFrame(&corrupt, Header{Migration: 1, Actor: "a"}, []byte("hello state"), true)
	cases := []struct {
		name string
		b    []byte
		max  int64
		want error
	}{
		{"corrupted state", corrupt.Bytes(), 100, ErrChecksum},
		{"too large", good.Bytes(), 3, ErrTooLarge},
		{"truncated", good.Bytes()[:good.Len()-5], 100, ErrBadFrame},
		{"trailing", append(append([]byte(nil), good.Bytes()...), 0), 100, ErrBadFrame},
		{"bad magic", append([]byte("XXXX"), good.Bytes()[4:]...), 100, ErrBadFrame},
		{"empty", nil, 100, ErrBadFrame},
	}
	for _, c := range cases {
		if _, _, err := ReadFrame(bytes.NewReader(c.b), c.max); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if Checksum([]byte("x")) == Checksum([]byte("y")) {
		t.Error("checksum collision")
	}
}

// FuzzReadFrame: no input panics, and a corrupted frame is never accepted
// with a state that differs from what was checksummed.
func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	WriteFrame(&b, Header{Migration: 3, Actor: "actor-1"}, []byte(`{"value":42}`), false)
	f.Add(b.Bytes())
	f.Add([]byte("KLM1\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, state, err := ReadFrame(bytes.NewReader(data), 1<<16)
		if err != nil {
			return
		}
		if int64(len(state)) != h.Size {
			t.Fatalf("size %d != header %d", len(state), h.Size)
		}
		// An accepted frame re-encodes and reads back to the same state.
		var out bytes.Buffer
		if err := WriteFrame(&out, h, state, false); err != nil {
			t.Fatal(err)
		}
		h2, state2, err := ReadFrame(&out, 1<<16)
		if err != nil || h2 != h || !bytes.Equal(state, state2) {
			t.Fatalf("re-encoded frame: %+v %v", h2, err)
		}
	})
}
