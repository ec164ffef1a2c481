package kurrentstore

import (
	"strings"
	"testing"
)

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"esdb://localhost:2113":                true,
		"esdb+discover://cluster.example:2113": true,
		"kurrentdb://localhost:2113?tls=false": true,
		"KurrentDB+Discover://a:1,b:2":         true,
		"kurrent://h":                          true,
		"kdb://h":                              true,
		"postgres://u:p@h/db":                  false,
		"sqlite:///tmp/x":                      false,
		"localhost:2113":                       false,
		"":                                     false,
		"esdbx://h":                            false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseURL(t *testing.T) {
	cfg, err := ParseURL("kurrentdb://localhost:2113?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "localhost:2113" || !cfg.DisableTLS || cfg.DnsDiscover {
		t.Errorf("kurrentdb:// ?tls=false: Address %q DisableTLS %v DnsDiscover %v; want localhost:2113, true, false", cfg.Address, cfg.DisableTLS, cfg.DnsDiscover)
	}
	cfg, err = ParseURL("esdb://admin:changeit@db.example")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "db.example:2113" || cfg.DisableTLS || cfg.Username != "admin" || cfg.Password != "changeit" {
		t.Errorf("esdb:// with credentials: %q TLS-off %v user %q password set %v; want db.example:2113 (default port), TLS on, admin, changeit",
			cfg.Address, cfg.DisableTLS, cfg.Username, cfg.Password == "changeit")
	}
	cfg, err = ParseURL("kurrentdb+discover://cluster.example:2113?nodePreference=follower")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DnsDiscover {
		t.Errorf("kurrentdb+discover:// did not select DNS discovery")
	}
	cfg, err = ParseURL("kurrentdb://a.example:2113,b.example:2114,c.example")
	if err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, s := range cfg.GossipSeeds {
		seeds = append(seeds, s.String())
	}
	if strings.Join(seeds, " ") != "a.example:2113 b.example:2114 c.example:2113" {
		t.Errorf("gossip seeds = %v", seeds)
	}

	for _, bad := range []string{
		"postgres://u:secret@h/db",
		"kurrentdb://admin:secret@h:notaport",
		"kurrentdb://admin:secret@h:2113/some/path",
		"localhost:2113",
	} {
		_, err := ParseURL(bad)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error prints the password: %v", bad, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"kurrentdb://admin:changeit@h:2113?tls=false":  "kurrentdb://admin:xxxxx@h:2113?tls=false",
		"esdb://admin:p%40ss@a:1,b:2":                  "esdb://admin:xxxxx@a:1,b:2",
		"esdb://h:2113":                                "esdb://h:2113",
		"esdb://user@h:2113":                           "esdb://user@h:2113",
		"esdb://h:2113?tlsCAFile=/etc/ca@2.pem":        "esdb://h:2113?tlsCAFile=/etc/ca@2.pem",
		"not a url":                                    "not a url",
		"esdb://u:pw@h:2113?tlsCAFile=/etc/ca@2.pem":   "esdb://u:xxxxx@h:2113?tlsCAFile=/etc/ca@2.pem",
		"kurrentdb+discover://u:pw@cluster.example:99": "kurrentdb+discover://u:xxxxx@cluster.example:99",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
