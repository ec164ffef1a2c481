package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/client"
)

// positionServer answers every request with the Haldir-Position and status
// the test sets, and records the Haldir-Position values each request sent.
type positionServer struct {
	mu     sync.Mutex
	answer string
	status int
	sent   [][]string
}

func (s *positionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, r.Header.Values(client.PositionHeader))
	if s.answer != "" {
		w.Header().Set(client.PositionHeader, s.answer)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	w.Write([]byte(`{"error":"scripted","code":"conflict"}`))
}

// call makes one request answered with position and status, and returns
// the Haldir-Position values it sent.
func (s *positionServer) call(t *testing.T, c *client.Client, position string, status int) []string {
	t.Helper()
	s.mu.Lock()
	s.answer, s.status = position, status
	s.mu.Unlock()
	err := c.Do(context.Background(), "GET", "/v1/usage", nil, nil)
	var ae *client.APIError
	if status < 400 && err != nil || status >= 400 && !errors.As(err, &ae) {
		t.Fatalf("answer %q (HTTP %d): %v", position, status, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[len(s.sent)-1]
}

func expectSent(t *testing.T, sent []string, want string) {
	t.Helper()
	if want == "" && len(sent) != 0 || want != "" && (len(sent) != 1 || sent[0] != want) {
		t.Fatalf("request sent Haldir-Position %q, want %q", sent, want)
	}
}

func TestClientEchoesTheHighestPositionSeen(t *testing.T) {
	s := &positionServer{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := client.New(srv.URL, "hld_test")

	expectSent(t, s.call(t, c, "7", 200), "")
	expectSent(t, s.call(t, c, "5", 200), "7")
	for _, bad := range []string{"abc", "-9", "+9", "9 9", "9.0", "0x10", "1_000", "9223372036854775808", "99999999999999999999"} {
		expectSent(t, s.call(t, c, bad, 200), "7")
	}
	expectSent(t, s.call(t, c, "", 200), "7")
	// An error answer carries a position too.
	expectSent(t, s.call(t, c, "9223372036854775807", 409), "7")
	expectSent(t, s.call(t, c, "", 200), "9223372036854775807")
	if got := c.Position(); got != 9223372036854775807 {
		t.Fatalf("Position() = %d", got)
	}
}

func TestPositionCarriesBetweenClients(t *testing.T) {
	s := &positionServer{status: 200}
	srv := httptest.NewServer(s)
	defer srv.Close()
	a, b := client.New(srv.URL, ""), client.New(srv.URL, "")
	if a.Position() != 0 {
		t.Fatalf("a fresh client has position %d", a.Position())
	}
	s.call(t, a, "42", 200)
	b.ObservePosition(a.Position())
	b.ObservePosition(3)
	b.ObservePosition(-1)
	expectSent(t, s.call(t, b, "", 200), "42")
}

func TestPositionUnderConcurrency(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(client.PositionHeader, r.URL.Query().Get("p"))
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	c := client.New(srv.URL, "")
	var wg sync.WaitGroup
	for i := 1; i <= 50; i++ {
		wg.Go(func() {
			if err := c.Do(context.Background(), "GET", "/v1/usage?p="+strconv.Itoa(i), nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := c.Position(); got != 50 {
		t.Fatalf("Position() = %d after answers 1..50", got)
	}
}
