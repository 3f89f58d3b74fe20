package httpd

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the description of the HTTP API (OpenAPI 3.1), served at
// /openapi.json. The API tests validate every request and response they
// make against it, so it cannot drift from the code.
//
//go:embed openapi.json
var OpenAPI []byte

// serveOpenAPI is GET /openapi.json.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*") // so API explorers on other sites can read it
	w.Write(OpenAPI)
}
