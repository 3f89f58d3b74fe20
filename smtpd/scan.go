package smtpd

import (
	"bytes"
	"crypto/tls"
	"sync/atomic"
)

// The smuggling scan: go-smtp's dataReader silently drops the CR of
// "<CRLF>.<CR>x", so that bare CR never reaches Session.Data. clientConn
// scans the raw bytes it reads for it (rfc 5321:2.3.8; the 2023 SMTP
// smuggling attacks), and for the CR CR that makes the dataReader miss
// the end of the data.

// scanner is the part of a clientConn that scans; only the reading
// goroutine touches scan and crcr.
type scanner struct {
	scan     byte        // rawScan's state
	smuggled atomic.Bool // saw <CRLF>.<CR> followed by something other than <LF>
	// crcr: the scan saw CR CR on this connection. go-smtp's dataReader
	// takes the second CR for the middle of a line, so it misses the end
	// of the data that follows "<CR><CR><LF>.<CR><LF>" and would wait for
	// more until the read timeout, holding the transaction's reservations.
	// A bare CR is refused anyway, so a read during DATA after it fails at
	// once instead of waiting. It stays set: the bytes may have been read
	// (and scanned) in one go with the commands before DATA.
	crcr bool
	// encrypted: STARTTLS is done and what passes here is ciphertext, which
	// rawScan cannot read. go-smtp reads the plaintext from its *tls.Conn
	// with no hook. A DATA message reaches relay still dot-stuffed
	// (smtp.DotStuffed), so the one sequence un-stuffing alters
	// (<CRLF>.<CR>x loses the dot and the CR) is refused there as a bare
	// CR; but a CR CR (see crcr) is found only at the end of the message:
	// under TLS a message ending "<CR><CR><LF>.<CR><LF>" waits for
	// ReadTimeout.
	encrypted atomic.Bool
}

// startedTLS is called from the first session after STARTTLS, before any
// transaction: the scanner saw the handshake's ciphertext, which means
// nothing, and is of no use from now on.
func (c *clientConn) startedTLS(tc *tls.Conn) {
	if c.encrypted.Swap(true) {
		return
	}
	c.tlsConn.Store(tc)
	c.smuggled.Store(false)
	c.crcr = false
}

// States of rawScan, which mirrors go-smtp's dataReader closely enough to
// find the one sequence it alters: a line starting with ".<CR>" whose CR
// is not followed by LF loses both the dot and the CR. A connection starts
// at the start of a line, the zero state.
const (
	scanLineStart = iota // after CRLF
	scanMid              // inside a line
	scanCR               // after CR
	scanDot              // after CRLF "."
	scanDotCR            // after CRLF "." CR
)

// rawScan runs the states over p. Inside a line only a CR changes the
// state, so there it skips to the next CR with bytes.IndexByte instead of
// looking at every byte (most of a message is the middle of lines).
func (c *clientConn) rawScan(p []byte) {
	st := c.scan
	for i := 0; i < len(p); i++ {
		if st == scanMid {
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				break
			}
			i += j
		}
		b := p[i]
		if st == scanDotCR && b != '\n' {
			c.smuggled.Store(true)
		}
		switch {
		case b == '\r':
			if st == scanCR || st == scanDotCR {
				c.crcr = true
			}
			if st == scanDot {
				st = scanDotCR
			} else {
				st = scanCR
			}
		case b == '\n':
			if st == scanCR || st == scanDotCR {
				st = scanLineStart
			} else {
				st = scanMid
			}
		case b == '.' && st == scanLineStart:
			st = scanDot
		default:
			st = scanMid
		}
	}
	c.scan = st
}
