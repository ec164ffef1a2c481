// Package client is a small Go client of Haldir's /v1 API, used by the
// haldir command line. Every call is bounded by the client's timeout.
//
// A client carries a session consistency token: the highest Haldir-Position
// (ledger position) any response has named, sent back on every later
// request. A server that answers such a request only once its read models
// include that position gives the client read-your-writes across replicas
// behind a load balancer (HALDIR_READ_YOUR_WRITES=position).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// PositionHeader names the ledger position a write reached, in responses,
// and the position a request must see, in requests.
const PositionHeader = "Haldir-Position"

// Client calls one Haldir server with one API key.
type Client struct {
	BaseURL string
	Key     string
	HTTP    *http.Client

	position atomic.Int64 // the highest Haldir-Position seen; 0 for none
}

// New returns a client for baseURL, authenticating with key.
func New(baseURL, key string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Key: key, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Position returns the highest Haldir-Position the client has seen in a
// response (0 before any): the token its requests carry.
func (c *Client) Position() int64 { return c.position.Load() }

// ObservePosition raises the client's position to pos; it never lowers it.
// It carries the token between clients: b.ObservePosition(a.Position()).
func (c *Client) ObservePosition(pos int64) {
	for cur := c.position.Load(); pos > cur; cur = c.position.Load() {
		if c.position.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// APIError is an error answer from the server: the JSON envelope.
type APIError struct {
	Status    int
	Code      string
	Message   string
	Field     string
	RequestID string
	// Body is the whole decoded error object (for approval ids and the like).
	Body map[string]any
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	return fmt.Sprintf("%s [%s, HTTP %d]", msg, e.Code, e.Status)
}

// UnreachableError means the server could not be reached at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Haldir at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard). Error answers become *APIError,
// transport failures *UnreachableError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: decode %s %s: %w", method, path, err)
	}
	return nil
}

// Raw sends a request and returns the response of a successful call with
// its body unread (for streams). The caller closes it.
func (c *Client) Raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	req.Header.Set("User-Agent", "haldir-cli")
	if pos := c.Position(); pos > 0 {
		req.Header.Set(PositionHeader, strconv.FormatInt(pos, 10))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return nil, ue
		}
		return nil, &UnreachableError{URL: c.BaseURL, Err: errors.Unwrap(err)}
	}
	// Digits only, at most an int64: anything else is ignored.
	if pos, err := strconv.ParseUint(resp.Header.Get(PositionHeader), 10, 63); err == nil {
		c.ObservePosition(int64(pos))
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-ID")}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(raw, &e.Body) == nil {
		e.Code, _ = e.Body["code"].(string)
		e.Message, _ = e.Body["error"].(string)
		e.Field, _ = e.Body["field"].(string)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return nil, e
}
