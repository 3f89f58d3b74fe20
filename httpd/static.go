package httpd

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The security headers of every page we serve. The page runs only its own
// script and style files; nothing may frame it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// The header values are shared, read-only slices: static responses are
// hot, and Header.Set would canonicalise and allocate for each.
var (
	hdrCSP            = []string{contentSecurityPolicy}
	hdrNosniff        = []string{"nosniff"}
	hdrNoReferrer     = []string{"no-referrer"}
	hdrDeny           = []string{"DENY"}
	hdrVary           = []string{"Accept-Encoding"}
	hdrGzip           = []string{"gzip"}
	hdrCacheHTML      = []string{cacheHTML}
	hdrCacheImmutable = []string{cacheImmutable}
)

func setPageHeaders(h http.Header) {
	h["Content-Security-Policy"] = hdrCSP
	h["X-Content-Type-Options"] = hdrNosniff
	h["Referrer-Policy"] = hdrNoReferrer
	h["X-Frame-Options"] = hdrDeny
}

// Cache lifetimes. HTML is revalidated on every use (cheap with the ETag),
// so a new release shows at once; the assets it links carry their content
// hash in the URL (?v=...) and may be kept for a year.
const (
	cacheHTML      = "no-cache"
	cacheImmutable = "public, max-age=31536000, immutable"
)

// staticFile is one file, prepared once at start-up.
type staticFile struct {
	body    []byte
	gz      []byte // nil: not worth compressing
	ctype   []string
	etag    []string // strong, from the content hash
	gzEtag  []string
	length  []string
	gzLen   []string
	version string // the ?v= value that makes the URL immutable
	html    bool
}

type staticHandler struct {
	files    map[string]*staticFile // by clean path without leading slash
	notFound *staticFile
}

// Static serves the files of fsys under /: "/" is index.html, an unknown
// path gets 404.html with status 404. Everything is read, hashed and
// gzip-compressed here, once, so requests only pick prepared bytes.
//
// It is meant for the embedded page (static.FS) and panics if fsys cannot
// be read, which would be a build mistake, not a runtime condition.
func Static(fsys fs.FS) http.Handler {
	h, err := newStatic(fsys)
	if err != nil {
		panic(fmt.Sprintf("httpd: static files: %v", err))
	}
	return h
}

// assetRef finds same-origin references to files in HTML, to fingerprint.
var assetRef = regexp.MustCompile(`\b(src|href)="/([^"?#]+)"`)

func newStatic(fsys fs.FS) (*staticHandler, error) {
	h := &staticHandler{files: map[string]*staticFile{}}
	raw := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		raw[name] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Assets first, so that the HTML can name their versions.
	for name, b := range raw {
		if !isHTML(name) {
			h.files[name] = prepare(name, b)
		}
	}
	for name, b := range raw {
		if !isHTML(name) {
			continue
		}
		b = assetRef.ReplaceAllFunc(b, func(m []byte) []byte {
			sub := assetRef.FindSubmatch(m)
			f := h.files[string(sub[2])]
			if f == nil {
				return m
			}
			return fmt.Appendf(nil, `%s="/%s?v=%s"`, sub[1], sub[2], f.version)
		})
		h.files[name] = prepare(name, b)
	}
	h.notFound = h.files["404.html"]
	return h, nil
}

func isHTML(name string) bool { return path.Ext(name) == ".html" }

func prepare(name string, b []byte) *staticFile {
	sum := sha256.Sum256(b)
	hash := base64.RawURLEncoding.EncodeToString(sum[:18])
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(b)
	}
	textual := strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "javascript") ||
		strings.Contains(ctype, "json") || strings.Contains(ctype, "svg") || strings.Contains(ctype, "xml")
	if textual && !strings.Contains(ctype, "charset=") {
		ctype += "; charset=utf-8"
	}
	f := &staticFile{
		body:    b,
		ctype:   []string{ctype},
		etag:    []string{`"` + hash + `"`},
		gzEtag:  []string{`"` + hash + `-gz"`},
		length:  []string{strconv.Itoa(len(b))},
		version: hash[:12],
		html:    isHTML(name),
	}
	if textual {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		if buf.Len() < len(b)*9/10 {
			f.gz = buf.Bytes()
			f.gzLen = []string{strconv.Itoa(buf.Len())}
		}
	}
	return f
}

func (h *staticHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		setPageHeaders(hdr)
		http.Error(w, "Method not allowed.", http.StatusMethodNotAllowed)
		return
	}
	f, status := h.lookup(r.URL.Path)
	if f == nil {
		setPageHeaders(hdr)
		http.Error(w, "Not found.", http.StatusNotFound)
		return
	}

	body, etag, length := f.body, f.etag, f.length
	if f.gz != nil {
		hdr["Vary"] = hdrVary
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag, length = f.gz, f.gzEtag, f.gzLen
			hdr["Content-Encoding"] = hdrGzip
		}
	}
	hdr["Cache-Control"] = hdrCacheHTML
	if !f.html && status == http.StatusOK && r.URL.RawQuery != "" && r.URL.Query().Get("v") == f.version {
		hdr["Cache-Control"] = hdrCacheImmutable
	}
	setPageHeaders(hdr)
	if status == http.StatusOK {
		hdr["Etag"] = etag
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag[0]) {
			delete(hdr, "Content-Encoding")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	hdr["Content-Type"] = f.ctype
	hdr["Content-Length"] = length
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// lookup maps a URL path to a file: "/" and "/dir/" to their index.html;
// anything unknown to the 404 page.
func (h *staticHandler) lookup(p string) (*staticFile, int) {
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" || strings.HasSuffix(p, "/") {
		name = path.Join(name, "index.html")
	}
	if f := h.files[name]; f != nil && name != "404.html" {
		return f, http.StatusOK
	}
	return h.notFound, http.StatusNotFound
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip:
// named with a non-zero q, or covered by "*" (rfc 9110:12.5.3).
func acceptsGzip(header string) bool {
	star := false
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		ok := qNonZero(params)
		switch coding {
		case "gzip", "x-gzip":
			return ok
		case "*":
			star = ok
		}
	}
	return star
}

func qNonZero(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q > 0
		}
	}
	return true
}

// etagMatches is the weak comparison If-None-Match asks for
// (rfc 9110:13.1.2): any listed tag, with or without W/, or "*".
func etagMatches(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
