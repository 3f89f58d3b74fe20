package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Status is the one mapping the API and the admin socket share; errors
// arrive wrapped with their context.
func TestStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{fmt.Errorf("show x: %w", store.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("change: %w", &alias.InvalidError{Field: "max-usage", Reason: "is too large"}), http.StatusBadRequest},
		{fmt.Errorf("create: %w", store.ErrTargetFull), http.StatusTooManyRequests},
		{fmt.Errorf("get: %w", store.ErrUnavailable), http.StatusServiceUnavailable},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		if got := Status(c.err); got != c.want {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
