package kurrentstore

import (
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events"
)

// conn holds the store's client and replaces it when it has closed itself.
//
// The v4 client reconnects on its own after a leader change or a dropped
// connection, but when node discovery fails (every attempt, for a server
// down longer than maxDiscoverAttempts × discoveryInterval) it marks itself
// closed and answers every later call with ErrorCodeConnectionClosed. A
// store must outlive a server restart, so the call that sees that error
// reports it and the next call gets a fresh client.
type conn struct {
	cfg    esdb.Configuration
	mu     sync.Mutex
	client *esdb.Client
	closed bool
}

func newConn(cfg *esdb.Configuration) (*conn, error) {
	c, err := esdb.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &conn{cfg: *cfg, client: c}, nil
}

// get returns the current client.
func (c *conn) get() (*esdb.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, events.ErrClosed
	}
	return c.client, nil
}

// failed tells conn that a call on cl failed with err. When err says the
// client has shut itself down, cl is replaced, unless another call already
// replaced it.
func (c *conn) failed(cl *esdb.Client, err error) {
	if !isClosed(err) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.client != cl {
		return
	}
	cfg := c.cfg
	fresh, nerr := esdb.NewClient(&cfg)
	if nerr != nil {
		return // the configuration was valid once; keep the old one
	}
	cl.Close()
	c.client = fresh
}

// close closes the client for good.
func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.client.Close()
}

// do runs fn with the current client and replaces the client if fn found it
// closed.
func (c *conn) do(fn func(*esdb.Client) error) error {
	cl, err := c.get()
	if err != nil {
		return err
	}
	err = fn(cl)
	if err != nil {
		c.failed(cl, err)
	}
	return err
}
