package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// The API tests run every request through ValidateOpenAPI, so each of
// them also checks openapi.json against what the code really does.

var openAPIDoc = sync.OnceValues(func() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return doc, nil
})

// ValidateOpenAPI wraps h so that every request and response passing
// through it is checked against openapi.json, a mismatch failing t.
func ValidateOpenAPI(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	v, err := newOpenAPIValidator(h, t.Errorf)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type openAPIValidator struct {
	next   http.Handler
	doc    *openapi3.T
	router routers.Router
	report func(format string, args ...any)
}

func newOpenAPIValidator(next http.Handler, report func(string, ...any)) (*openAPIValidator, error) {
	doc, err := openAPIDoc()
	if err != nil {
		return nil, err
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openAPIValidator{next, doc, router, report}, nil
}

func (v *openAPIValidator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	v.next.ServeHTTP(rec, r)
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())

	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err := v.check(req, rec.Result().StatusCode, rec.Header(), rec.Body.Bytes()); err != nil {
		v.report("%s %s → %d: %v\nresponse: %.300s", r.Method, r.URL.Path, rec.Code, err, rec.Body.Bytes())
	}
}

// check validates one exchange. A request the description refuses must
// have been refused (4xx); the response must be one the description has.
// A request outside every path and method of the description is the
// router's own 404 or 405, which must still be a documented error, unless
// it is not JSON: a file of the web page, which is not the API.
func (v *openAPIValidator) check(req *http.Request, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	route, params, err := v.router.FindRoute(req)
	if err == nil && slices.Contains(slices.Collect(maps.Values(params)), "") {
		// The legacy router takes /aliases for /aliases/{id} with an empty
		// id; chi does not, and neither does the description.
		err = routers.ErrPathNotFound
	}
	if err != nil {
		if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/json" {
			return nil
		}
		return v.checkRouterError(status, header, body)
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: bearerGiven},
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && status < 400 {
		return fmt.Errorf("answered %d to a request the description refuses: %w", status, err)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(ctx, out)
}

// checkRouterError checks an answer to a path or method the description
// does not have against the documented error for its status.
func (v *openAPIValidator) checkRouterError(status int, header http.Header, body []byte) error {
	name := map[int]string{http.StatusNotFound: "NotFound", http.StatusMethodNotAllowed: "MethodNotAllowed"}[status]
	resp := v.doc.Components.Responses[name]
	if resp == nil {
		return fmt.Errorf("status %d for a path or method the description does not have", status)
	}
	for h, ref := range resp.Value.Headers {
		if ref.Value.Required && header.Get(h) == "" {
			return fmt.Errorf("no %s header", h)
		}
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return err
	}
	return resp.Value.Content.Get("application/json").Schema.Value.VisitJSON(value, openapi3.EnableJSONSchema2020())
}

func bearerGiven(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return errors.New("no bearer token")
	}
	return nil
}

// TestOpenAPIValidatorFails: the validator catches responses that the
// description does not allow, so the API tests that pass through it are
// a real check of openapi.json.
func TestOpenAPIValidatorFails(t *testing.T) {
	good := `{"id":"abc","alias":"abc@tempalias.test","target":"t@example.com","created":"2026-11-22T08:00:00Z","expires":"2026-11-25T08:00:00Z","max-usage":null,"remaining":null,"relayed":0,"refused":0,"lifetime":"It stops working after 3 days.","status":"active","allow-from":[],"lock-sender":false,"token":"0123456789abcdefghijklmnop"}`
	for _, tc := range []struct {
		name, method, path, reqBody string
		status                      int
		header                      []string
		body                        string
		fails                       bool
	}{
		{"documented creation", "POST", "/aliases", `{"target":"t@example.com"}`, 201, []string{"Location", "/aliases/abc"}, good, false},
		{"creation without Location", "POST", "/aliases", `{"target":"t@example.com"}`, 201, nil, good, true},
		{"creation without token", "POST", "/aliases", `{"target":"t@example.com"}`, 201, []string{"Location", "/aliases/abc"}, strings.Replace(good, `,"token":"0123456789abcdefghijklmnop"`, "", 1), true},
		{"undocumented field", "POST", "/aliases", `{"target":"t@example.com"}`, 201, []string{"Location", "/aliases/abc"}, strings.Replace(good, `"id"`, `"secret":1,"id"`, 1), true},
		{"created from an invalid request", "POST", "/aliases", `{"target":"t@example.com","days":"3"}`, 201, []string{"Location", "/aliases/abc"}, good, true},
		{"undocumented status", "POST", "/aliases", `{"target":"t@example.com"}`, 418, nil, `{"error":"server-error","description":"x"}`, true},
		{"wrong code for the status", "GET", "/aliases/abc", "", 404, nil, `{"error":"invalid-data","description":"x"}`, true},
		{"unknown code", "GET", "/aliases/abc", "", 500, nil, `{"error":"oops","description":"x"}`, true},
		{"429 without Retry-After", "POST", "/aliases", `{"target":"t@example.com"}`, 429, nil, `{"error":"rate-limited","description":"x"}`, true},
		{"405 without Allow", "PUT", "/aliases", "", 405, nil, `{"error":"method-not-allowed","description":"x"}`, true},
		{"405 with Allow", "PUT", "/aliases", "", 405, []string{"Allow", "POST"}, `{"error":"method-not-allowed","description":"x"}`, false},
		{"unknown path, wrong body", "GET", "/aliases/a/b", "", 404, nil, `{"error":"not-found"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(tc.header); i += 2 {
					w.Header().Set(tc.header[i], tc.header[i+1])
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			var reports []string
			v, err := newOpenAPIValidator(h, func(format string, args ...any) { reports = append(reports, fmt.Sprintf(format, args...)) })
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.reqBody))
			if tc.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("Authorization", "Bearer x")
			v.ServeHTTP(httptest.NewRecorder(), req)
			if failed := len(reports) > 0; failed != tc.fails {
				t.Errorf("reported %q, want failure %v", reports, tc.fails)
			}
		})
	}
}

// TestOpenAPIServed: the description is served as it is in the
// repository, and is OpenAPI 3.1.
func TestOpenAPIServed(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "GET", "/openapi.json", "", "")
	if r.status != 200 || r.raw != string(OpenAPI) || r.body["openapi"] != "3.1.0" {
		t.Fatalf("GET /openapi.json: %d %.200s", r.status, r.raw)
	}
	doc, err := openAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	// Every error code of the contract is described, and answered by an
	// operation with its status (405 by the router, for methods the
	// description does not have).
	want := map[string]int{"invalid-data": 400, "blocked": 403, "not-found": 404, "method-not-allowed": 405,
		"too-large": 413, "invalid-request-type": 415, "rate-limited": 429, "server-error": 500, "unavailable": 503}
	answered := map[string]bool{"#/components/responses/MethodNotAllowed 405": true}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for status, ref := range op.Responses.Map() {
				answered[ref.Ref+" "+status] = true
			}
		}
	}
	for name, resp := range doc.Components.Responses {
		code, _ := resp.Value.Content.Get("application/json").Schema.Value.Properties["error"].Value.Const.(string)
		status, ok := want[code]
		if !ok {
			t.Errorf("response %s has code %q", name, code)
			continue
		}
		delete(want, code)
		if !answered["#/components/responses/"+name+" "+strconv.Itoa(status)] {
			t.Errorf("code %s: no operation answers %d with it", code, status)
		}
	}
	for code := range want {
		t.Errorf("code %s is not described", code)
	}
}
