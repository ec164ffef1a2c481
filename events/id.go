package events

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync"
	"time"
)

// idEncoding is base32 with the digits first, so encoded ids sort like the
// bytes they encode.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

var idClock struct {
	sync.Mutex
	last uint64
}

// NewID returns a new event id, "evt_" followed by 24 characters: 48 bits
// of Unix milliseconds and 72 random bits. Ids made by one process sort in
// the order they were made, so the ledger's unique index on event ids grows
// at its end instead of at random pages.
func NewID() string {
	ms := uint64(time.Now().UnixMilli())
	idClock.Lock()
	if ms <= idClock.last {
		ms = idClock.last // same millisecond: order by the random part
	}
	idClock.last = ms
	idClock.Unlock()
	var b [15]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("events: crypto/rand failed: " + err.Error())
	}
	return "evt_" + idEncoding.EncodeToString(b[:])
}
