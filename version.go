package main

import (
	"fmt"
	"net"
	"runtime"
	"runtime/debug"

	"github.com/tempalias/tempalias/config"
)

// version is the release's version, set when it is built:
//
//	go build -ldflags "-X main.version=v1.2.0" .
//
// Empty, the module version Go stamped into the binary is used ("(devel)"
// for a build from a checkout).
var version string

// build is what a binary knows of how it was made.
type build struct {
	Version  string
	Commit   string // the VCS revision, "" when Go stamped none (go run)
	Date     string // the commit's time (RFC 3339), "" likewise
	Modified bool   // built from a tree with uncommitted changes
	Go       string
}

func buildVersion() build {
	b := build{Version: version, Go: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Date = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// String is what `tempalias version` prints.
func (b build) String() string {
	commit, date := b.Commit, b.Date
	if commit == "" {
		commit = "unknown (built without version control information: go run, -buildvcs=false, or no git checkout)"
	} else if b.Modified {
		commit += " (with uncommitted changes)"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("tempalias %s\ncommit: %s\ndate:   %s\ngo:     %s %s/%s\n", b.Version, commit, date, b.Go, runtime.GOOS, runtime.GOARCH)
}

// pageURL is where people find the web page: http.public_url, or the
// HTTP listener's own address.
func pageURL(cfg *config.Config, ln net.Listener) string {
	if cfg.HTTP.PublicURL != "" {
		return cfg.HTTP.PublicURL
	}
	host, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return "http://" + ln.Addr().String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost" // listening on every address
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
