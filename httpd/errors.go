package httpd

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Status is the HTTP status an error of the domain or the store becomes:
// the one mapping for the API and the admin socket. An alias that is not
// there (unknown, dead, wrong token) is 404, an invalid request 400, a
// target with the most live aliases 429, a store that cannot be reached
// 503; anything else is the server's fault, 500.
func Status(err error) int {
	var inv *alias.InvalidError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.As(err, &inv):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrTargetFull):
		return http.StatusTooManyRequests
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// apiError is an error as the client sees it.
type apiError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"description"`
}

var (
	errNotFound         = &apiError{http.StatusNotFound, "not-found", "No such alias, or it has expired, or the token does not match."}
	errMethodNotAllowed = &apiError{http.StatusMethodNotAllowed, "method-not-allowed", "This method is not allowed here."}
	errTooLarge         = &apiError{http.StatusRequestEntityTooLarge, "too-large", "The request body is larger than " + strconv.Itoa(MaxBodyBytes) + " bytes."}
	errContentType      = &apiError{http.StatusUnsupportedMediaType, "invalid-request-type", "Send the request as JSON with Content-Type: application/json (with curl: -H 'Content-Type: application/json')."}
	errRateLimited      = &apiError{http.StatusTooManyRequests, "rate-limited", "Too many aliases created from your address; try again in a minute."}
	errBlocked          = &apiError{http.StatusForbidden, "blocked", "Your address is on a blocklist this service uses; aliases cannot be created from it."}
	errUnknownClient    = invalid("The proxy in front of this service did not say which address the request came from, so it cannot be counted; its operator should check the X-Forwarded-For it sends.")
	errServer           = &apiError{http.StatusInternalServerError, "server-error", "Something went wrong on our side; nothing was created. Please try again."}
	errUnavailable      = &apiError{http.StatusServiceUnavailable, "unavailable", "The alias store cannot be reached just now; nothing was changed. Please try again shortly."}
)

// retryUnavailable is the Retry-After of errUnavailable, in seconds: an
// etcd cluster elects a new leader within a few.
const retryUnavailable = "5"

func invalid(description string) *apiError {
	return &apiError{http.StatusBadRequest, "invalid-data", description}
}

// writeError is the one place API errors become responses.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server-error","description":"Something went wrong on our side."}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
