package sqldb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener receives Postgres notifications (LISTEN/NOTIFY) on one
// dedicated connection, for what replicas must learn of at once: appends
// by another replica, and read-model changes that invalidate a cache.
type Listener struct {
	// Channels are the channels to LISTEN on.
	Channels []string
	// Notify is called for each notification, on the listener's goroutine.
	Notify func(channel, payload string)
	// Connected is called with true once listening (after every
	// reconnection, when notifications may have been missed), and with
	// false when the connection is lost.
	Connected func(bool)
	// Retry is the pause before a reconnection (default 1 s).
	Retry time.Duration
}

// Listen runs l on db's Postgres database until ctx is done. It reconnects
// after a lost connection. It fails at once on SQLite, which has one
// process and no notifications.
func (db *DB) Listen(ctx context.Context, l Listener) error {
	if db.Dialect != Postgres {
		return errors.New("sqldb: notifications need Postgres")
	}
	if l.Retry == 0 {
		l.Retry = time.Second
	}
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, l)
		if l.Connected != nil {
			l.Connected(false)
		}
		if ctx.Err() != nil {
			break
		}
		_ = err // the caller learns of it through Connected(false); retry
		select {
		case <-ctx.Done():
		case <-time.After(l.Retry):
		}
	}
	return ctx.Err()
}

func (db *DB) listenOnce(ctx context.Context, l Listener) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, db.url)
	cancel()
	if err != nil {
		return fmt.Errorf("sqldb: listen: %w", redact(err, db.url))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range l.Channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("sqldb: listen %s: %w", ch, err)
		}
	}
	if l.Connected != nil {
		l.Connected(true)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.Notify(n.Channel, n.Payload)
	}
}
