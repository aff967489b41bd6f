package placement

import (
	"errors"
	"testing"
)

func TestStateText(t *testing.T) {
	tests := []struct {
		name    string
		state   State
		text    string
		wantErr bool
	}{
		{name: "active", state: StateActive, text: "active"},
		{name: "migrating", state: StateMigrating, text: "migrating"},
		{name: "zero is invalid", state: 0, text: "State(0)", wantErr: true},
		{name: "undefined is invalid", state: 7, text: "State(7)", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.state.String(); got != tc.text {
				t.Errorf("String() = %q, want %q", got, tc.text)
			}
			if got := tc.state.Valid(); got == tc.wantErr {
				t.Errorf("Valid() = %v, want %v", got, !tc.wantErr)
			}
			b, err := tc.state.MarshalText()
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidPlacement) {
					t.Fatalf("MarshalText() error = %v, want ErrInvalidPlacement", err)
				}
				return
			}
			if err != nil || string(b) != tc.text {
				t.Fatalf("MarshalText() = %q, %v; want %q", b, err, tc.text)
			}
			var s State
			if err := s.UnmarshalText(b); err != nil || s != tc.state {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", b, s, err, tc.state)
			}
		})
	}
}

func TestStateUnmarshalTextRejects(t *testing.T) {
	for _, in := range []string{"", "Active", "ACTIVE", "1", "migrating ", "State(1)", "unknown"} {
		s := StateMigrating
		if err := s.UnmarshalText([]byte(in)); !errors.Is(err, ErrInvalidPlacement) {
			t.Errorf("UnmarshalText(%q) error = %v, want ErrInvalidPlacement", in, err)
		}
		if s != StateMigrating {
			t.Errorf("UnmarshalText(%q) changed the state to %v", in, s)
		}
	}
}

func TestPlacementValidate(t *testing.T) {
	ok := Placement{Actor: "a", Node: "n1", Token: 1, State: StateActive}
	tests := []struct {
		name   string
		mutate func(*Placement)
		valid  bool
	}{
		{name: "valid active", mutate: func(*Placement) {}, valid: true},
		{name: "valid migrating with incarnation", mutate: func(p *Placement) { p.State, p.Incarnation = StateMigrating, 9 }, valid: true},
		{name: "empty actor", mutate: func(p *Placement) { p.Actor = "" }},
		{name: "empty node", mutate: func(p *Placement) { p.Node = "" }},
		{name: "token 0", mutate: func(p *Placement) { p.Token = 0 }},
		{name: "state 0", mutate: func(p *Placement) { p.State = 0 }},
		{name: "state 3", mutate: func(p *Placement) { p.State = 3 }},
		{name: "actor not UTF-8", mutate: func(p *Placement) { p.Actor = "a\xff" }},
		{name: "node not UTF-8", mutate: func(p *Placement) { p.Node = "\xfen" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mutate(&p)
			err := p.Validate()
			if tc.valid && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidPlacement) {
				t.Fatalf("Validate() = %v, want ErrInvalidPlacement", err)
			}
		})
	}
}

func TestOrphanValidate(t *testing.T) {
	ok := Orphan{Actor: "a", Node: "n1", Token: 3, Since: 7}
	tests := []struct {
		name   string
		mutate func(*Orphan)
		valid  bool
	}{
		{name: "valid", mutate: func(*Orphan) {}, valid: true},
		{name: "empty actor", mutate: func(o *Orphan) { o.Actor = "" }},
		{name: "empty node", mutate: func(o *Orphan) { o.Node = "" }},
		{name: "token 0", mutate: func(o *Orphan) { o.Token = 0 }},
		{name: "since 0", mutate: func(o *Orphan) { o.Since = 0 }},
		{name: "actor not UTF-8", mutate: func(o *Orphan) { o.Actor = "\xff" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			err := o.Validate()
			if tc.valid && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidPlacement) {
				t.Fatalf("Validate() = %v, want ErrInvalidPlacement", err)
			}
		})
	}
}

// TestCheckFence covers the fencing-token rule of G4 SingleActivation: work
// stamped with an older token than the current placement's is refused.
func TestCheckFence(t *testing.T) {
	tests := []struct {
		name               string
		current, presented uint64
		stale              bool
	}{
		{name: "equal token accepted (renewal keeps it)", current: 5, presented: 5},
		{name: "older token refused", current: 5, presented: 4, stale: true},
		{name: "much older token refused", current: 1 << 40, presented: 1, stale: true},
		{name: "zero token refused once placed", current: 1, presented: 0, stale: true},
		{name: "newer token accepted (checker behind)", current: 5, presented: 6},
		{name: "nothing placed yet", current: 0, presented: 0},
		{name: "max token", current: ^uint64(0), presented: ^uint64(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFence(tc.current, tc.presented)
			if !tc.stale {
				if err != nil {
					t.Fatalf("CheckFence(%d, %d) = %v, want nil", tc.current, tc.presented, err)
				}
				return
			}
			if !errors.Is(err, ErrStaleToken) {
				t.Fatalf("CheckFence(%d, %d) = %v, want ErrStaleToken", tc.current, tc.presented, err)
			}
			var se *StaleTokenError
			if !errors.As(err, &se) || se.Current != tc.current || se.Presented != tc.presented {
				t.Fatalf("CheckFence(%d, %d) = %#v, want StaleTokenError with both tokens", tc.current, tc.presented, err)
			}
		})
	}
}
