package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/haldir-dev/haldir/domain"
)

// recorder is the response of one in-process API request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// apiResult is an API answer: its status, headers and body.
type apiResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// OK reports a 2xx.
func (r *apiResult) OK() bool { return r.Status >= 200 && r.Status < 300 }

// apiError is the API's error envelope.
type apiError struct {
	Status   int    `json:"-"`
	Message  string `json:"error"`
	Code     string `json:"code"`
	Required string `json:"required"`
}

func (e *apiError) Error() string { return e.Message }

// Err returns the API's error for a non-2xx answer, nil for a 2xx.
func (r *apiResult) Err() *apiError {
	if r.OK() {
		return nil
	}
	e := &apiError{Status: r.Status}
	if json.Unmarshal(r.Body, e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("the API answered %d", r.Status)
	}
	return e
}

// Decode unmarshals a 2xx body into v, or returns the API's error.
func (r *apiResult) Decode(v any) error {
	if e := r.Err(); e != nil {
		return e
	}
	d := json.NewDecoder(bytes.NewReader(r.Body))
	d.UseNumber()
	return d.Decode(v)
}

// apiCall sends one request to the /v1 handler in this process, as the
// caller holding key would over the network: the route table authenticates
// it and checks the key's scope, so the dashboard can do nothing the key
// cannot. from is the browser's request (its address, for logs and rate
// limits); position, when set, is echoed so that the read waits for a
// write made a moment ago (read-your-writes across replicas).
func (h *Handler) apiCall(ctx context.Context, from *http.Request, key, method, path string, body any, position string) *apiResult {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &apiResult{Status: http.StatusInternalServerError, Body: []byte(`{"error":"could not encode the request","code":"internal"}`)}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://haldir.internal"+path, rd)
	if err != nil {
		return &apiResult{Status: http.StatusBadRequest, Body: []byte(`{"error":"bad request path","code":"invalid_request"}`)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if position != "" && strings.Trim(position, "0123456789") == "" {
		req.Header.Set("Haldir-Position", position)
	}
	if from != nil {
		req.RemoteAddr = from.RemoteAddr
		if id := from.Header.Get("X-Request-ID"); id != "" {
			req.Header.Set("X-Request-ID", id)
		}
	}
	rec := &recorder{header: http.Header{}}
	h.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &apiResult{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
}

// can reports whether scopes grant resource:access.
func can(scopes domain.KeyScopes, resource domain.Resource, access domain.Access) bool {
	return scopes.Allows(domain.Need{Resource: resource, Access: access})
}
