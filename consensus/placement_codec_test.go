package consensus

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

// TestDecodePlaceFastMatchesStrict: wherever the fast PlaceBatch decoder
// accepts input, the strict JSON decoder yields the same batch; it accepts
// everything EncodePlace writes; and DecodeCommand's answers (including
// errors) are those of the strict path alone, for encoded batches and for
// mutations of them.
func TestDecodePlaceFastMatchesStrict(t *testing.T) {
	seed := rand.Int63()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	id := func() string {
		const chars = "abcXYZ019._-"
		b := make([]byte, 1+rng.Intn(12))
		for i := range b {
			b[i] = chars[rng.Intn(len(chars))]
		}
		return string(b)
	}
	strict := func(body []byte) (any, error) {
		var pb PlaceBatch
		if err := decodeStrictJSON(body, &pb); err != nil {
			return nil, err
		}
		if err := pb.Validate(); err != nil {
			return nil, err
		}
		return pb, nil
	}
	mutations := []func(string) string{
		func(s string) string { return s },
		func(s string) string { return s + " " },
		func(s string) string { return strings.Replace(s, `"actor"`, `"Actor"`, 1) },
		func(s string) string { return strings.Replace(s, `":"`, `": "`, 1) },
		func(s string) string { return strings.Replace(s, `"proposed_at":`, `"proposed_at":-`, 1) },
		func(s string) string { return strings.Replace(s, `"node":"`, `"node":"\u0041`, 1) },
		func(s string) string { return strings.Replace(s, `}]`, `},]`, 1) },
		func(s string) string { return strings.Replace(s, `"items":[`, `"items":[]`, 1) },
		func(s string) string { return s[:rng.Intn(len(s))] },
		func(s string) string { i := rng.Intn(len(s)); return s[:i] + "\"" + s[i:] },
		func(s string) string { return strings.Replace(s, `"proposed_at":`, `"proposed_at":9`, 1) },
	}
	for trial := 0; trial < 2000; trial++ {
		b := PlaceBatch{ProposedAtUnixNano: rng.Int63()}
		items, node := 1+rng.Intn(5), id
		if trial%4 == 0 { // many items over more nodes than the decoder scans linearly
			pool := make([]string, 1+rng.Intn(40))
			for i := range pool {
				pool[i] = id()
			}
			items, node = 1+rng.Intn(100), func() string { return pool[rng.Intn(len(pool))] }
		}
		for i := 0; i < items; i++ {
			b.Items = append(b.Items, PlaceItem{Actor: id(), Node: node()})
		}
		enc, err := EncodePlace(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := decodePlaceFast(enc[headerSize:]); !ok || !reflect.DeepEqual(got, b) {
			t.Fatalf("fast path refused or changed its own encoding %s: %+v %v", enc, got, ok)
		}
		m := mutations[rng.Intn(len(mutations))]
		body := []byte(m(string(enc[headerSize:])))
		want, werr := strict(body)
		if fast, ok := decodePlaceFast(body); ok && (werr != nil && fast.Validate() == nil || werr == nil && !reflect.DeepEqual(fast, want)) {
			t.Fatalf("fast path accepted %s as %+v; strict says %+v, %v", body, fast, want, werr)
		}
		_, got, gerr := DecodeCommand(append([]byte{CodecVersion, byte(CmdPlace)}, body...))
		if (gerr == nil) != (werr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeCommand(%s) = %+v, %v; strict %+v, %v", body, got, gerr, want, werr)
		}
	}
}
