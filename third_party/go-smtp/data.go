package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining

	// raw: Read returns the data as the client sent it, dot-stuffed; only
	// the end-of-data line is left out (see DotStuffed).
	raw bool
	// read: Read was called at least once.
	read bool
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// DotStuffed returns the message of a DATA command as the client sent it,
// still dot-stuffed (RFC 5321 section 4.5.2), so that a relay can pass it
// on without un-stuffing and re-stuffing every line. r must be the reader
// Session.Data was given, before anything was read from it. The data read
// ends with the CRLF before the terminating "." line, which is consumed
// but not returned; it always ends with a CRLF unless it is empty.
// Everything else is as with r itself: the end of data is found by the
// same rules, and Server.MaxMessageBytes counts the bytes r would have
// returned (the message un-stuffed).
//
// For any other reader (a BDAT transfer, whose chunks are not stuffed, or a
// reader already read from) DotStuffed returns r and false.
func DotStuffed(r io.Reader) (io.Reader, bool) {
	dr, ok := r.(*dataReader)
	if !ok || dr.read {
		return r, false
	}
	dr.raw = true
	return dr, true
}

func (r *dataReader) Read(b []byte) (n int, err error) {
	r.read = true
	// lim is how many bytes of the un-stuffed message this call may
	// return; u counts them. Without raw they are the bytes returned.
	lim := len(b)
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(lim) > r.n {
			lim = int(r.n)
		}
	}
	u := 0

	// Code below is taken from net/textproto with only one modification to
	// not rewrite CRLF -> LF.

	// Run data through a simple state machine to
	// elide leading dots and detect End-of-Data (<CR><LF>.<CR><LF>) line.
	const (
		stateBeginLine = iota // beginning of line; initial state; must be zero
		stateDot              // read . at beginning of line
		stateDotCR            // read .\r at beginning of line
		stateCR               // read \r (possibly at end of line)
		stateData             // reading data in middle of line
		stateEOF              // reached .\r\n end marker line
	)
	for n < len(b) && u < lim && r.state != stateEOF {
		// Inside a line only CR matters: what is already buffered up to
		// the next CR is copied at once.
		if r.state == stateData && r.r.Buffered() > 0 {
			p, _ := r.r.Peek(r.r.Buffered())
			k := bytes.IndexByte(p, '\r')
			if k < 0 {
				k = len(p)
			}
			if k > len(b)-n {
				k = len(b) - n
			}
			if k > lim-u {
				k = lim - u
			}
			if k > 0 {
				copy(b[n:], p[:k])
				r.r.Discard(k)
				n += k
				u += k
				continue
			}
		}
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				if r.raw {
					// Left out only if it starts the end-of-data line.
					// Short of two more bytes the input ends before
					// that line can: the next ReadByte says so.
					if next, _ := r.r.Peek(2); len(next) == 2 && next[0] == '\r' && next[1] == '\n' {
						r.r.Discard(2)
						r.state = stateEOF
						continue
					}
					b[n] = c
					n++
				}
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				if r.raw {
					b[n] = c
					n++
				}
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			// A second CR may still end the line (net/textproto
			// re-reads it in stateData, which goes back to stateCR).
			r.state = stateData
			if c == '\r' {
				r.state = stateCR
			}
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			// As above: after CR CR the line may end at the next LF.
			if c != '\r' {
				r.state = stateData
			}
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
		u++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(u)
	}
	return
}
