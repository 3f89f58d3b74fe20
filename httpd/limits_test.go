package httpd

import (
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store/boltstore"
)

func TestLimitsFollowSetLimits(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "t.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	api := New(Config{Domains: []string{"tempalias.test"}, Limits: alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100}}, st)
	srv := httptest.NewServer(ValidateOpenAPI(t, api))
	t.Cleanup(srv.Close)
	ta := &testAPI{Server: srv}

	check := func(want map[string]float64) {
		t.Helper()
		r := ta.do(t, "GET", "/limits", "", "")
		if r.status != 200 || len(r.body) != len(want) {
			t.Fatalf("GET /limits: %d %s", r.status, r.raw)
		}
		for k, v := range want {
			if r.body[k] != v {
				t.Errorf("%s = %v, want %v", k, r.body[k], v)
			}
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q: a reload must show new limits", cc)
		}
	}
	check(map[string]float64{"default-days": 3, "max-days": 60, "max-usage": 100})
	api.SetLimits(alias.Limits{DefaultDays: 7, MaxDays: 14, MaxUsage: 9}, 0)
	check(map[string]float64{"default-days": 7, "max-days": 14, "max-usage": 9})
}
