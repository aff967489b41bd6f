package placement

import (
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestDefaultLeaseConfig(t *testing.T) {
	c := DefaultLeaseConfig()
	if c.Duration != 4*time.Second || c.Margin != 500*time.Millisecond {
		t.Fatalf("DefaultLeaseConfig() = %+v, want 4s lease and 500ms margin", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if got, want := c.RenewInterval(), 4*time.Second/3; got != want {
		t.Fatalf("RenewInterval() = %v, want %v", got, want)
	}
}

func TestLeaseConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   LeaseConfig
		valid bool
	}{
		{name: "default", cfg: DefaultLeaseConfig(), valid: true},
		{name: "minimum lease, no margin", cfg: LeaseConfig{Duration: MinLeaseDuration}, valid: true},
		{name: "largest margin", cfg: LeaseConfig{Duration: time.Second, Margin: time.Second - 1}, valid: true},
		{name: "long lease", cfg: LeaseConfig{Duration: time.Minute, Margin: 10 * time.Second}, valid: true},
		{name: "zero value is not defaulted", cfg: LeaseConfig{}},
		{name: "lease below minimum", cfg: LeaseConfig{Duration: MinLeaseDuration - 1}},
		{name: "negative lease", cfg: LeaseConfig{Duration: -4 * time.Second}},
		{name: "negative margin", cfg: LeaseConfig{Duration: 4 * time.Second, Margin: -1}},
		{name: "margin equal to lease", cfg: LeaseConfig{Duration: 4 * time.Second, Margin: 4 * time.Second}},
		{name: "margin above lease (unit mistake)", cfg: LeaseConfig{Duration: 4 * time.Second, Margin: 1000 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.cfg
			err := tc.cfg.Validate()
			if tc.cfg != before {
				t.Fatalf("Validate mutated the config: %+v -> %+v", before, tc.cfg)
			}
			if tc.valid && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidLeaseConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidLeaseConfig", err)
			}
		})
	}
}

func TestRenewInterval(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		MinLeaseDuration: 100 * time.Millisecond,
		3 * time.Second:  time.Second,
		4 * time.Second:  1333333333,
	} {
		if got := (LeaseConfig{Duration: d}).RenewInterval(); got != want {
			t.Errorf("RenewInterval() for %v = %v, want %v", d, got, want)
		}
	}
}

func TestHolderExpiry(t *testing.T) {
	c := DefaultLeaseConfig()
	sent := at(10 * time.Second)
	if got, want := c.HolderExpiry(sent), at(14*time.Second); !got.Equal(want) {
		t.Fatalf("HolderExpiry = %v, want %v", got, want)
	}
	tests := []struct {
		name  string
		now   time.Time
		valid bool
	}{
		{name: "at the send", now: sent, valid: true},
		{name: "just before expiry", now: at(14*time.Second - 1), valid: true},
		{name: "exactly at expiry the lease is over", now: at(14 * time.Second)},
		{name: "after expiry", now: at(20 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.HolderValid(sent, tc.now); got != tc.valid {
				t.Fatalf("HolderValid(%v) = %v, want %v", tc.now.Sub(t0), got, tc.valid)
			}
		})
	}
}

func TestSurelyExpired(t *testing.T) {
	c := LeaseConfig{Duration: 4 * time.Second, Margin: time.Second} // 5s in all
	tests := []struct {
		name                 string
		lastGrant, electedAt time.Time
		wantAt               time.Time
		now                  time.Time
		expired              bool
	}{
		{name: "grant after election, before the deadline", lastGrant: at(10 * time.Second), electedAt: at(0),
			wantAt: at(15 * time.Second), now: at(15*time.Second - 1)},
		{name: "grant after election, exactly at the deadline", lastGrant: at(10 * time.Second), electedAt: at(0),
			wantAt: at(15 * time.Second), now: at(15 * time.Second), expired: true},
		{name: "lease alone is not enough, the margin counts", lastGrant: at(10 * time.Second), electedAt: at(0),
			wantAt: at(15 * time.Second), now: at(14 * time.Second)},
		{name: "election after the last grant counts from the election", lastGrant: at(0), electedAt: at(10 * time.Second),
			wantAt: at(15 * time.Second), now: at(12 * time.Second)},
		{name: "election after the last grant, at the deadline", lastGrant: at(0), electedAt: at(10 * time.Second),
			wantAt: at(15 * time.Second), now: at(15 * time.Second), expired: true},
		{name: "never granted by this leader counts from the election", electedAt: at(10 * time.Second),
			wantAt: at(15 * time.Second), now: at(14*time.Second + 999*time.Millisecond)},
		{name: "never granted, well after the election", electedAt: at(10 * time.Second),
			wantAt: at(15 * time.Second), now: at(time.Hour), expired: true},
		{name: "grant and election at the same instant", lastGrant: at(time.Second), electedAt: at(time.Second),
			wantAt: at(6 * time.Second), now: at(6 * time.Second), expired: true},
		{name: "unknown election time is never expired", lastGrant: at(0),
			wantAt: never, now: at(1000 * time.Hour)},
		{name: "nothing known is never expired",
			wantAt: never, now: at(1000 * time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.SurelyExpiredAt(tc.lastGrant, tc.electedAt); !got.Equal(tc.wantAt) {
				t.Errorf("SurelyExpiredAt = %v, want %v", got, tc.wantAt)
			}
			if got := c.SurelyExpired(tc.lastGrant, tc.electedAt, tc.now); got != tc.expired {
				t.Errorf("SurelyExpired(now=%v) = %v, want %v", tc.now.Sub(t0), got, tc.expired)
			}
		})
	}
	if !never.After(at(200 * 365 * 24 * time.Hour)) {
		t.Fatalf("never = %v is not in the far future", never)
	}
}

func drawLeaseConfig(t *rapid.T) LeaseConfig {
	d := time.Duration(rapid.Int64Range(int64(MinLeaseDuration), int64(time.Minute)).Draw(t, "duration"))
	m := time.Duration(rapid.Int64Range(0, int64(d)-1).Draw(t, "margin"))
	c := LeaseConfig{Duration: d, Margin: m}
	if err := c.Validate(); err != nil {
		t.Fatalf("generated invalid config %+v: %v", c, err)
	}
	return c
}

// TestLeaseSafety (G6 LeaseSafety, LeaseUniqueness): for any renewal sent at
// sentAt and granted at grantAt ≥ sentAt, any election time and any now, if
// the leader finds the lease surely expired then now is at least Margin past
// the holder's own expiry: the holder has stopped before the leader re-places
// its actors. (One shared clock; TestLeaseSafetyUnderDrift adds skew.)
func TestLeaseSafety(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawLeaseConfig(t)
		span := int64(10 * time.Minute)
		// Mix small values in so the boundaries (grant right at the send,
		// now right at the deadline) are hit often.
		near := func(max int64) *rapid.Generator[int64] {
			return rapid.OneOf(rapid.Int64Range(0, 1), rapid.Int64Range(0, max))
		}
		sentAt := at(time.Duration(rapid.Int64Range(-span, span).Draw(t, "sent")))
		grantAt := sentAt.Add(time.Duration(near(span).Draw(t, "grantDelay")))
		electedAt := grantAt.Add(time.Duration(near(span).Draw(t, "electedAfter")))
		if rapid.Bool().Draw(t, "electedBeforeGrant") {
			electedAt = grantAt.Add(-time.Duration(near(span).Draw(t, "electedBefore")))
		}
		var lastGrant time.Time // zero: this leader never granted (the grant came from its predecessor)
		if rapid.IntRange(0, 3).Draw(t, "grantedByThisLeader") > 0 {
			lastGrant = grantAt
		} else if electedAt.Before(grantAt) {
			// A predecessor's grant precedes this leader's election.
			electedAt = grantAt.Add(time.Duration(near(span).Draw(t, "electedAfterGrant")))
		}
		// Probe around the leader's deadline, where an off-by-one would show.
		offset := near(int64(time.Second)).Draw(t, "offset") - near(int64(time.Second)).Draw(t, "offsetDown")
		now := c.SurelyExpiredAt(lastGrant, electedAt).Add(time.Duration(offset))
		if !c.SurelyExpired(lastGrant, electedAt, now) {
			return
		}
		if earliest := c.HolderExpiry(sentAt).Add(c.Margin); now.Before(earliest) {
			t.Fatalf("leader re-places at %v but the holder may serve until %v (+margin %v)",
				now.Sub(t0), c.HolderExpiry(sentAt).Sub(t0), c.Margin)
		}
		if c.HolderValid(sentAt, now) {
			t.Fatalf("holder still valid at %v while the leader re-places", now.Sub(t0))
		}
	})
}

// TestLeaseSafetyUnderDrift (LeaseUniqueness under clock skew): with the
// holder's and the leader's clocks running at rates up to ±driftPPM apart
// from real time, the holder stops (in real time) no later than the leader
// re-places, provided Margin ≥ 2·drift·Duration/(1−drift). The default
// configuration tolerates 0.1% drift, about a hundred times real quartz.
func TestLeaseSafetyUnderDrift(t *testing.T) {
	const ppm = 1_000_000
	needMargin := func(d time.Duration, driftPPM int64) time.Duration {
		return time.Duration((2*driftPPM*int64(d))/(ppm-driftPPM)) + 2 // +2ns for rounding
	}
	const defaultDrift = 1000
	if c := DefaultLeaseConfig(); c.Margin < needMargin(c.Duration, defaultDrift) {
		t.Fatalf("default margin %v does not tolerate %d ppm drift (needs %v)", c.Margin, defaultDrift, needMargin(c.Duration, defaultDrift))
	}
	rapid.Check(t, func(t *rapid.T) {
		drift := rapid.Int64Range(0, 10_000).Draw(t, "driftPPM")
		c := drawLeaseConfig(t)
		if c.Margin < needMargin(c.Duration, drift) {
			c.Margin = needMargin(c.Duration, drift)
		}
		holderRate := rapid.Int64Range(-drift, drift).Draw(t, "holderRatePPM") // holder-ns per real-ns is 1+rate/ppm
		leaderRate := rapid.Int64Range(-drift, drift).Draw(t, "leaderRatePPM")
		realSent := int64(0)
		realGrant := rapid.Int64Range(0, int64(time.Minute)).Draw(t, "grantDelay")
		// Real time at which each side's clock has advanced by x of its own ns.
		holderStop := realSent + ceilDiv(int64(c.Duration)*ppm, ppm+holderRate)
		// The leader's clock reading of the grant is its own origin here;
		// it re-places once its clock shows Duration+Margin more.
		leaderReplace := realGrant + (int64(c.Duration+c.Margin)*ppm)/(ppm+leaderRate)
		if leaderReplace < holderStop {
			t.Fatalf("with %+v, rates %d/%d ppm: leader re-places at %dns real, holder stops at %dns",
				c, holderRate, leaderRate, leaderReplace, holderStop)
		}
	})
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
