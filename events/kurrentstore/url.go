package kurrentstore

import (
	"fmt"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// schemes maps every connection-string scheme the KurrentDB clients accept
// to the one the v4 client parses. The successor client
// (github.com/kurrent-io/KurrentDB-Client-Go) accepts all of them with the
// same grammar; v4 knows only esdb:// and esdb+discover://.
var schemes = map[string]string{
	"esdb":               "esdb",
	"esdb+discover":      "esdb+discover",
	"kurrentdb":          "esdb",
	"kurrentdb+discover": "esdb+discover",
	"kurrent":            "esdb",
	"kurrent+discover":   "esdb+discover",
	"kdb":                "esdb",
	"kdb+discover":       "esdb+discover",
}

// IsURL reports whether s is a KurrentDB connection string, that is,
// whether HALDIR_EVENT_STORE_URL set to s selects this backend. It looks
// only at the scheme (esdb://, kurrentdb://, their +discover forms, and
// the successor client's kurrent:// and kdb://).
func IsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return false
	}
	_, known := schemes[strings.ToLower(scheme)]
	return known
}

// ParseURL returns the client configuration for a KurrentDB connection
// string. Everything after the scheme follows the client's conventions:
// user:password@ for credentials; several host:port pairs separated by
// commas (or a +discover scheme) for a cluster; ?tls=false for an
// insecure server; tlsCAFile, tlsVerifyCert, userCertFile and userKeyFile
// for TLS; nodePreference, defaultDeadline, maxDiscoverAttempts and the
// keep-alive settings as the client documents them. TLS is on unless
// tls=false.
func ParseURL(s string) (*esdb.Configuration, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, fmt.Errorf("kurrentstore: %q is not a connection string (want esdb:// or kurrentdb://)", Redact(s))
	}
	v4, known := schemes[strings.ToLower(scheme)]
	if !known {
		return nil, fmt.Errorf("kurrentstore: unknown scheme %q (want esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://)", scheme)
	}
	cfg, err := esdb.ParseConnectionString(v4 + "://" + rest)
	if err != nil {
		// The client's message may quote the string, password included.
		return nil, fmt.Errorf("kurrentstore: invalid connection string %s", Redact(s))
	}
	return cfg, nil
}

// Redact returns s with the password of its credentials replaced, for
// logs and error messages.
func Redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end] // an @ in the path or query is not userinfo
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return s
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
