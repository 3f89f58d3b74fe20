package smtp

import (
	"bytes"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// refLineLimitReader is lineLimitReader.Read as released: a count per
// byte. The test holds the new one to it.
type refLineLimitReader struct {
	R             io.Reader
	LineLimit     int
	curLineLength int
}

func (r *refLineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}
	if r.LineLimit == 0 {
		return n, nil
	}
	for _, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++
		if r.curLineLength > r.LineLimit {
			return 0, ErrTooLongLine
		}
	}
	return n, nil
}

// chunks returns data in reads of sizes drawn from rng.
type chunks struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.Intn(len(c.data))
	if n > len(p) {
		n = len(p)
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// The line limit found with bytes.IndexByte gives every read the result
// the byte-at-a-time count gave, over random streams of short and long
// lines, limits and read sizes, until the end or the error (which then
// stays).
func TestLineLimitReaderMatchesByteAtATime(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 3000; iter++ {
		var data []byte
		for len(data) < 1+rng.Intn(300) {
			data = append(data, bytes.Repeat([]byte{'x'}, rng.Intn(40))...)
			switch rng.Intn(3) {
			case 0:
				data = append(data, '\n')
			case 1:
				data = append(data, "\r\n"...)
			}
		}
		limit := rng.Intn(50)
		seed := rng.Int63()
		got := &lineLimitReader{R: &chunks{data: data, rng: rand.New(rand.NewSource(seed))}, LineLimit: limit}
		want := &refLineLimitReader{R: &chunks{data: data, rng: rand.New(rand.NewSource(seed))}, LineLimit: limit}
		size := 1 + rng.Intn(64)
		bg, bw := make([]byte, size), make([]byte, size)
		for call := 0; ; call++ {
			ng, eg := got.Read(bg)
			nw, ew := want.Read(bw)
			if ng != nw || eg != ew || !bytes.Equal(bg[:ng], bw[:nw]) {
				t.Fatalf("limit %d, read %d of %q: got %d, %v; want %d, %v", limit, call, data, ng, eg, nw, ew)
			}
			if ew != nil && (ew != ErrTooLongLine || call > len(data)+2) {
				break
			}
			if ew == nil && nw == 0 {
				break
			}
		}
	}
}

// oneRead returns its data in a single read, again and again.
type oneRead struct{ data []byte }

func (o oneRead) Read(p []byte) (int, error) { return copy(p, o.data), nil }

// BenchmarkLineLimitReader: a read of a 4 KiB message of 64-byte lines,
// the byte-at-a-time count (ref) beside the one with bytes.IndexByte.
func BenchmarkLineLimitReader(b *testing.B) {
	msg := bytes.Repeat([]byte(strings.Repeat("x", 62)+"\r\n"), 64)
	buf := make([]byte, len(msg))
	b.Run("ref", func(b *testing.B) {
		r := &refLineLimitReader{R: oneRead{msg}, LineLimit: 2000}
		b.SetBytes(int64(len(msg)))
		for i := 0; i < b.N; i++ {
			r.Read(buf)
		}
	})
	b.Run("new", func(b *testing.B) {
		r := &lineLimitReader{R: oneRead{msg}, LineLimit: 2000}
		b.SetBytes(int64(len(msg)))
		for i := 0; i < b.N; i++ {
			r.Read(buf)
		}
	})
}
