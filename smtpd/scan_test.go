package smtpd

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// scanByByte is rawScan as it was before it skipped to the next CR: every
// byte through the states. The test below holds rawScan to it.
func scanByByte(s *scanner, p []byte) {
	st := s.scan
	for _, b := range p {
		if st == scanDotCR && b != '\n' {
			s.smuggled.Store(true)
		}
		switch {
		case b == '\r':
			if st == scanCR || st == scanDotCR {
				s.crcr = true
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
	s.scan = st
}

// TestRawScanEveryByte: the skipping scan ends in the same state and finds
// the same smuggling and CR CR as the byte-at-a-time one, for random
// streams of the bytes that matter cut into random reads.
func TestRawScanEveryByte(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\n.ab")
	for n := 0; n < 20000; n++ {
		p := make([]byte, r.IntN(40))
		for i := range p {
			p[i] = alphabet[r.IntN(len(alphabet))]
		}
		c := &clientConn{}
		var want scanner
		for rest := p; len(rest) > 0; {
			k := 1 + r.IntN(len(rest))
			c.rawScan(rest[:k])
			scanByByte(&want, rest[:k])
			if c.scan != want.scan || c.crcr != want.crcr || c.smuggled.Load() != want.smuggled.Load() {
				t.Fatalf("%q, after %q: state %d crcr %v smuggled %v, want %d %v %v", p, p[:len(p)-len(rest)+k],
					c.scan, c.crcr, c.smuggled.Load(), want.scan, want.crcr, want.smuggled.Load())
			}
			rest = rest[k:]
		}
	}
}

func TestRawScanSequences(t *testing.T) {
	for _, tc := range []struct {
		in             string
		smuggled, crcr bool
	}{
		{"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", false, false},
		{"body line\r\n.\r\n", false, false},
		{"hello\r\n.\rMAIL FROM:<e@vil>\r\n", true, false},
		{"long line without the end of a line ......", false, false},
		{"x\r\r\n.\r\n", false, true},
		{"x\r\n..\r\nbare\nlf\r\n", false, false},
	} {
		c := &clientConn{}
		c.rawScan([]byte(tc.in))
		if c.smuggled.Load() != tc.smuggled || c.crcr != tc.crcr {
			t.Errorf("%q: smuggled %v crcr %v, want %v %v", tc.in, c.smuggled.Load(), c.crcr, tc.smuggled, tc.crcr)
		}
	}
}

// BenchmarkRawScan: the scan over a 4 KiB message of 78-byte lines, as
// rawScan does it and as it was done before (scanByByte).
func BenchmarkRawScan(b *testing.B) {
	line := append(bytes.Repeat([]byte("0123456789abcdef"), 5)[:76], '\r', '\n')
	msg := bytes.Repeat(line, 4096/len(line))
	b.Run("skip", func(b *testing.B) {
		c := &clientConn{}
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			c.rawScan(msg)
		}
	})
	b.Run("byte", func(b *testing.B) {
		var s scanner
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			scanByByte(&s, msg)
		}
	})
}
