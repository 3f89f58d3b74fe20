package main

import (
	"fmt"
	"log/slog"
	"syscall"

	"github.com/tempalias/tempalias/config"
)

// connBudget is how many connections each front end may hold, so that
// no client, however many connections it opens, can take the descriptors
// everyone else needs (DESIGN "Connection limits").
type connBudget struct {
	openFiles           uint64 // the soft RLIMIT_NOFILE
	smtp, smtpPerClient int
	http, httpPerClient int
}

// openFiles returns the soft limit on open files after raising it to the
// hard one. Go's runtime already does that at start (since Go 1.19, to one
// below the hard limit), so this normally only reads it.
func openFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading the open files limit: %w", err)
	}
	if lim.Cur+1 < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	return lim.Cur, nil
}

const (
	// fdReserve is kept aside for everything but client connections: the
	// data file, listeners, the admin socket, logs, etcd and DNS.
	fdReserve = 64
	// maxConnsEach caps either front end's share, whatever the limit:
	// past it memory, not descriptors, runs out first.
	maxConnsEach = 16384
	// minPerClient is the least share of one client: a sending MTA opens
	// dozens of connections (Postfix allows 50 per client), a load
	// generator a hundred.
	minPerClient = 100
)

// planConns shares n descriptors between the front ends. An SMTP
// connection can cost three (the client's, ours to the smarthost and,
// with the Maildir sink, the sink's end of it), an HTTP one costs one.
// After fdReserve, SMTP gets a sixth of the rest in connections (half of
// it in descriptors) and HTTP a quarter, which keeps the total below the
// limit with room to spare. One client may hold a sixteenth of a front
// end's share, at least minPerClient, but never more than two thirds of
// it, so that a second client is always served (with a limit of 1024,
// the one in the fd exhaustion report, every share is 100).
func planConns(n uint64) connBudget {
	n = min(n, 1<<24) // RLIM_INFINITY and other huge limits
	usable := int(n) - min(fdReserve, int(n)/4)
	b := connBudget{
		openFiles: n,
		smtp:      max(2, min(usable/6, maxConnsEach)),
		http:      max(2, min(usable/4, maxConnsEach)),
	}
	b.smtpPerClient = perClient(b.smtp)
	b.httpPerClient = perClient(b.http)
	return b
}

func perClient(total int) int {
	return min(max(minPerClient, total/16), total*2/3)
}

// connLimits is the plan for the process's limit, with the configured
// numbers where set; a configured number above the plan's share is held
// to it, with a warning, since it would let clients exhaust descriptors.
func connLimits(c *config.Config, log *slog.Logger) (connBudget, error) {
	n, err := openFiles()
	if err != nil {
		return connBudget{}, err
	}
	b := planConns(n)
	// pick sets *v to the configured number unless that is 0 (the plan
	// stands) or above limit (held to it).
	pick := func(key string, set int, v *int, limit int) {
		switch {
		case set == 0:
		case set > limit:
			log.Warn("connection limit above what the open files limit allows; held to it", "key", key, "configured", set, "held_to", limit, "open_files", n)
			*v = limit
		default:
			*v = set
		}
	}
	pick("smtp.max_connections", c.SMTP.MaxConns, &b.smtp, b.smtp)
	pick("http.max_connections", c.HTTP.MaxConns, &b.http, b.http)
	b.smtpPerClient = min(b.smtpPerClient, b.smtp)
	b.httpPerClient = min(b.httpPerClient, b.http)
	pick("smtp.max_connections_per_client", c.SMTP.MaxConnsPerIP, &b.smtpPerClient, b.smtp)
	pick("http.max_connections_per_client", c.HTTP.MaxConnsPerIP, &b.httpPerClient, b.http)
	log.Info("connection limits", "open_files", n, "smtp", b.smtp, "smtp_per_client", b.smtpPerClient, "http", b.http, "http_per_client", b.httpPerClient)
	return b, nil
}
