// Package static holds tempalias's web page: the form, its script and
// style, the bookmarklet's popup and the 404 page, embedded into the binary
// so that the page needs nothing from outside the service's own origin.
package static

import "embed"

// FS holds the page's files at its root (index.html, app.js, ...).
//
//go:embed *.html *.js *.css *.svg
var FS embed.FS
