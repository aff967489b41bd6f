package gossip

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.NodeName = "n1"
	c.BindAddr = "127.0.0.2"
	return c
}

func TestProfilesAreValid(t *testing.T) {
	for name, c := range map[string]Config{"default": DefaultConfig(), "test": TestConfig()} {
		c.NodeName, c.BindAddr = "n1", "127.0.0.2"
		if err := c.Validate(); err != nil {
			t.Errorf("%s profile: %v", name, err)
		}
	}
	if c := TestConfig(); c.BindPort != 0 || c.ProbeInterval > 200*time.Millisecond || c.LeavePropagateDelay > 100*time.Millisecond {
		t.Errorf("TestConfig is not a fast profile: %+v", c)
	}
	if c := DefaultConfig(); c.ReconnectTimeout >= 24*time.Hour || c.TombstoneTimeout >= 24*time.Hour {
		t.Errorf("DefaultConfig keeps serf's 24 h reap timeouts")
	}
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("x", 600)
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"no bind addr", func(c *Config) { c.BindAddr = "" }, "BindAddr is required"},
		{"hostname bind addr", func(c *Config) { c.BindAddr = "localhost" }, "not an IP"},
		{"unspecified v4", func(c *Config) { c.BindAddr = "0.0.0.0" }, "concrete IP"},
		{"unspecified v6", func(c *Config) { c.BindAddr = "::" }, "concrete IP"},
		{"negative port", func(c *Config) { c.BindPort = -1 }, "BindPort"},
		{"port too big", func(c *Config) { c.BindPort = 70000 }, "BindPort"},
		{"empty role", func(c *Config) { c.Tags.Role = "" }, "Role"},
		{"unknown role", func(c *Config) { c.Tags.Role = "Server" }, "Role"},
		{"tags too large", func(c *Config) { c.Tags.Zone = long }, "Tags too large"},
		{"zero probe interval", func(c *Config) { c.ProbeInterval = 0 }, "ProbeInterval"},
		{"zero probe timeout", func(c *Config) { c.ProbeTimeout = 0 }, "ProbeTimeout"},
		{"timeout >= interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "must be < ProbeInterval"},
		{"suspicion mult", func(c *Config) { c.SuspicionMult = 0 }, "SuspicionMult"},
		{"gossip interval", func(c *Config) { c.GossipInterval = -time.Second }, "GossipInterval"},
		{"push pull", func(c *Config) { c.PushPullInterval = 0 }, "PushPullInterval"},
		{"tcp timeout", func(c *Config) { c.TCPTimeout = 0 }, "TCPTimeout"},
		{"reconnect timeout", func(c *Config) { c.ReconnectTimeout = 0 }, "ReconnectTimeout"},
		{"tombstone timeout", func(c *Config) { c.TombstoneTimeout = 0 }, "TombstoneTimeout"},
		{"reap interval", func(c *Config) { c.ReapInterval = 0 }, "ReapInterval"},
		{"reconnect interval", func(c *Config) { c.ReconnectInterval = 0 }, "ReconnectInterval"},
		{"broadcast timeout", func(c *Config) { c.BroadcastTimeout = 0 }, "BroadcastTimeout"},
		{"negative leave delay", func(c *Config) { c.LeavePropagateDelay = -1 }, "LeavePropagateDelay"},
		{"event buffer", func(c *Config) { c.EventBuffer = 0 }, "EventBuffer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			before := c
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if c.NodeName != before.NodeName || c.Logger != before.Logger || c.Now != nil {
				t.Error("Validate mutated the config")
			}
			if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New accepted it: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Config{}.Validate()
	for _, want := range []string{"NodeName", "BindAddr", "Role", "ProbeInterval", "EventBuffer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("zero Config: error %v does not mention %s", err, want)
		}
	}
}

func TestNewAppliesDefaultsToACopy(t *testing.T) {
	c := validConfig()
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if c.Logger != nil || c.Now != nil {
		t.Error("New changed the caller's config")
	}
	if g.cfg.Logger != slog.Default() || g.cfg.Now == nil {
		t.Error("New did not fill in the default Logger and Now")
	}
	if g.bindIP != "127.0.0.2" {
		t.Errorf("bindIP = %q", g.bindIP)
	}
}
