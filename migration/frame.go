package migration

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Transfer frame, as sent from source to target:
//
//	"KLM1" | uint32 BE header length | header JSON | state (Header.Size bytes) | SHA-256(state)
//
// The checksum covers the state; the header names the migration so that a
// frame can never be staged for another actor or migration.

var frameMagic = [4]byte{'K', 'L', 'M', '1'}

// maxHeader bounds the header JSON.
const maxHeader = 4096

var (
	// ErrChecksum: the state does not match its checksum (corrupted in
	// transit). The migration must abort.
	ErrChecksum = errors.New("migration: state checksum mismatch")
	// ErrTooLarge: the state exceeds the configured limit.
	ErrTooLarge = errors.New("migration: state too large")
	// ErrBadFrame: the bytes are not a transfer frame.
	ErrBadFrame = errors.New("migration: malformed transfer frame")
)

// Header describes a frame's state.
type Header struct {
	Migration uint64 `json:"migration"`
	Actor     string `json:"actor"`
	Size      int64  `json:"size"`
}

// Checksum is the hex SHA-256 of state.
func Checksum(state []byte) string {
	sum := sha256.Sum256(state)
	return hex.EncodeToString(sum[:])
}

// WriteFrame writes one frame. corrupt, if true, flips a bit of the state
// after the checksum is computed (fault-injection tests only).
func WriteFrame(w io.Writer, h Header, state []byte, corrupt bool) error {
	h.Size = int64(len(state))
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(state)
	var pre [8]byte
	copy(pre[:4], frameMagic[:])
	binary.BigEndian.PutUint32(pre[4:], uint32(len(hb)))
	body := state
	if corrupt && len(state) > 0 {
		body = append([]byte(nil), state...)
		body[len(body)/2] ^= 0x01
	}
	for _, b := range [][]byte{pre[:], hb, body, sum[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// ReadFrame reads and verifies one frame, refusing states over maxSize
// before reading them.
func ReadFrame(r io.Reader, maxSize int64) (Header, []byte, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return Header{}, nil, fmt.Errorf("%w: preamble: %v", ErrBadFrame, err)
	}
	if !bytes.Equal(pre[:4], frameMagic[:]) {
		return Header{}, nil, fmt.Errorf("%w: bad magic", ErrBadFrame)
	}
	hl := binary.BigEndian.Uint32(pre[4:])
	if hl == 0 || hl > maxHeader {
		return Header{}, nil, fmt.Errorf("%w: header length %d", ErrBadFrame, hl)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, nil, fmt.Errorf("%w: header: %v", ErrBadFrame, err)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || h.Actor == "" || h.Migration == 0 || h.Size < 0 {
		return Header{}, nil, fmt.Errorf("%w: header %q", ErrBadFrame, hb)
	}
	if h.Size > maxSize {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, h.Size, maxSize)
	}
	state := make([]byte, h.Size)
	if _, err := io.ReadFull(r, state); err != nil {
		return Header{}, nil, fmt.Errorf("%w: state: %v", ErrBadFrame, err)
	}
	var sum [sha256.Size]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return Header{}, nil, fmt.Errorf("%w: checksum: %v", ErrBadFrame, err)
	}
	got := sha256.Sum256(state)
	if subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
		return Header{}, nil, fmt.Errorf("%w: %s", ErrChecksum, h.Actor)
	}
	var extra [1]byte
	if n, _ := r.Read(extra[:]); n != 0 {
		return Header{}, nil, fmt.Errorf("%w: trailing data", ErrBadFrame)
	}
	return h, state, nil
}
