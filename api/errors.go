package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// statusOf maps an error code to its HTTP status. It is the only place
// where codes meet statuses.
func statusOf(c domain.Code) int {
	switch c {
	case domain.CodeInvalid:
		return http.StatusBadRequest
	case domain.CodeUnauthenticated:
		return http.StatusUnauthorized
	case domain.CodeInsufficientScope, domain.CodeSessionInvalid, domain.CodeBudgetExceeded, domain.CodePolicyDenied, domain.CodeApprovalRequired, domain.CodeAgentKilled:
		return http.StatusForbidden
	case domain.CodeNotFound:
		return http.StatusNotFound
	case domain.CodeConflict:
		return http.StatusConflict
	case domain.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case domain.CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case domain.CodeIdempotencyReused:
		return http.StatusUnprocessableEntity
	case domain.CodeRateLimited:
		return http.StatusTooManyRequests
	case domain.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorBody builds the JSON error envelope for err. Errors that are not a
// *domain.Error become a generic 500 that reveals nothing; they are logged
// with the request id instead.
func errorBody(log *slog.Logger, reqID string, err error) (int, map[string]any) {
	var de *domain.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &de):
	case errors.Is(err, events.ErrConflict):
		// A decision that kept losing version races to other writers
		// (commands re-decide a bounded number of times): nothing was
		// appended, and the client may simply retry.
		de = domain.Errorf(domain.CodeUnavailable, "too many concurrent changes to the same record; retry the request")
	case errors.Is(err, events.ErrUnavailable):
		// The store could not write (disk full, read-only, I/O error):
		// nothing was acknowledged, and the same request may be retried.
		// The cause is for the operator's log, never for the client.
		log.Error("the store cannot write", "request_id", reqID, "err", err)
		de = domain.Errorf(domain.CodeUnavailable, "the ledger cannot record changes right now; retry shortly")
	case errors.As(err, &mbe):
		de = domain.Errorf(domain.CodeTooLarge, "request body is larger than %d bytes", mbe.Limit)
	default:
		log.Error("internal error", "request_id", reqID, "err", err)
		de = domain.Errorf(domain.CodeInternal, "something went wrong on our side; quote the request id when reporting it")
	}
	body := map[string]any{"error": de.Message, "code": string(de.Code), "request_id": reqID}
	if de.Field != "" {
		body["field"] = de.Field
	}
	if de.Reason != "" {
		body["reason"] = de.Reason
	}
	for k, v := range de.Extra {
		body[k] = v
	}
	return statusOf(de.Code), body
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"response encoding failed","code":"internal"}`)
	}
	writeRaw(w, status, b)
}

// writeRaw writes JSON bytes as the response.
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// timeFormat is how times appear in JSON: RFC 3339, UTC, milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

// optionalTime returns nil for a zero time, for JSON null.
func optionalTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}
