package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// refDataReader is dataReader.Read as it was before the buffered fast path
// and DotStuffed: one byte at a time, with the CR CR fix (a CR after CR
// may still end the line, as in net/textproto). The tests hold the new
// one to it.
type refDataReader struct {
	r     *bufio.Reader
	state int
	n     int64
}

func (r *refDataReader) Read(b []byte) (n int, err error) {
	if r.n <= 0 {
		return 0, ErrDataTooLarge
	}
	if int64(len(b)) > r.n {
		b = b[0:r.n]
	}
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
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
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
			if c == '\r' {
				r.state = stateCR
			}
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
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
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	r.n -= int64(n)
	return
}

// readAll reads r with reads of size chunk (the last buffer a reader
// returns matters for the size limit), then what is left after it.
func readAll(r io.Reader, br *bufio.Reader, chunk int) (out []byte, err error, rest string) {
	buf := make([]byte, chunk)
	for {
		n, rerr := r.Read(buf)
		out = append(out, buf[:n]...)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	tail, _ := io.ReadAll(br)
	return out, err, string(tail)
}

// unstuff is what the byte-at-a-time reader makes of data followed by the
// end-of-data line.
func unstuff(t *testing.T, data []byte) []byte {
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(data), strings.NewReader(".\r\n")))
	out, err, rest := readAll(&refDataReader{r: br, n: 1 << 40}, br, 4096)
	if err != nil || rest != "" {
		t.Fatalf("un-stuffing %q: err %v, rest %q", data, err, rest)
	}
	return out
}

func checkDataReader(t *testing.T, in string, limit int64, chunk int) {
	t.Helper()
	newBuf := func() *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(in), 16) }

	refBr := newBuf()
	want, wantErr, wantRest := readAll(&refDataReader{r: refBr, n: limit}, refBr, chunk)

	br := newBuf()
	got, gotErr, gotRest := readAll(&dataReader{r: br, limited: true, n: limit}, br, chunk)
	if !bytes.Equal(got, want) || gotErr != wantErr || gotRest != wantRest {
		t.Fatalf("%q (limit %d, reads of %d): got %q, %v, rest %q; want %q, %v, rest %q",
			in, limit, chunk, got, gotErr, gotRest, want, wantErr, wantRest)
	}

	br = newBuf()
	dr := &dataReader{r: br, limited: true, n: limit}
	sr, ok := DotStuffed(dr)
	if !ok {
		t.Fatal("DotStuffed refused an unread DATA reader")
	}
	raw, rawErr, rawRest := readAll(sr, br, chunk)
	if (rawErr == nil) != (wantErr == nil) || errors.Is(rawErr, ErrDataTooLarge) != errors.Is(wantErr, ErrDataTooLarge) {
		t.Fatalf("%q (limit %d, reads of %d) dot-stuffed: err %v, want %v", in, limit, chunk, rawErr, wantErr)
	}
	if !strings.HasPrefix(in, string(raw)) {
		t.Fatalf("%q dot-stuffed: got %q, not what the client sent", in, raw)
	}
	if wantErr != nil {
		return
	}
	if rawRest != wantRest {
		t.Fatalf("%q dot-stuffed: rest %q, want %q", in, rawRest, wantRest)
	}
	if len(raw) > 0 && !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Fatalf("%q dot-stuffed: %q does not end with CRLF", in, raw)
	}
	if u := unstuff(t, raw); !bytes.Equal(u, want) {
		t.Fatalf("%q dot-stuffed: %q un-stuffs to %q, want %q", in, raw, u, want)
	}
}

var dataReaderCases = []string{
	".\r\n",
	"a\r\n.\r\n",
	"a\r\n.\r\nMAIL FROM:<x>\r\n",
	"..\r\n.\r\n",
	"..a\r\n.b\r\n.\r\n",
	".a\r\n.\r\n",
	"\r\n.\r\n",
	"a\r\n.\rb\r\n.\r\n",
	"a\r\r\n.\r\n.\r\n",
	"a\r\n.\r\r\n.\r\n",
	"a\nb\r\n.\r\n",
	"a\r\n.",
	"a\r\n.\r",
	"a\r\n",
	"",
	"Subject: x\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 40) + ".\r\nQUIT\r\n",
	strings.Repeat(".x\r\n", 50) + ".\r\n",
}

func TestDataReaderMatchesByteAtATime(t *testing.T) {
	for _, in := range dataReaderCases {
		for _, limit := range []int64{1, 2, 3, 5, 8, 100, 1 << 20} {
			for _, chunk := range []int{1, 2, 3, 7, 64, 4096} {
				checkDataReader(t, in, limit, chunk)
			}
		}
	}
}

func TestDotStuffedOnlyUnread(t *testing.T) {
	dr := &dataReader{r: bufio.NewReader(strings.NewReader("a\r\n.\r\n"))}
	dr.Read(make([]byte, 1))
	if _, ok := DotStuffed(dr); ok {
		t.Error("DotStuffed took a reader already read from")
	}
	if _, ok := DotStuffed(strings.NewReader("x")); ok {
		t.Error("DotStuffed took a reader that is no DATA reader")
	}
}

func FuzzDataReader(f *testing.F) {
	for _, in := range dataReaderCases {
		f.Add(in, int64(100), 7)
	}
	f.Fuzz(func(t *testing.T, in string, limit int64, chunk int) {
		if limit <= 0 || chunk <= 0 || chunk > 1<<16 {
			return
		}
		checkDataReader(t, in, limit, chunk)
	})
}

func TestStuffedWriter(t *testing.T) {
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{nil, ".\r\n"},
		{[]string{"a\r\n"}, "a\r\n.\r\n"},
		{[]string{"a"}, "a\r\n.\r\n"},
		{[]string{"a\r"}, "a\r\r\n.\r\n"},
		{[]string{"a\r", "\n"}, "a\r\n.\r\n"},
		{[]string{"a\r\n", "", "b"}, "a\r\nb\r\n.\r\n"},
		{[]string{"..x\r\n", "\r\n"}, "..x\r\n\r\n.\r\n"},
		{[]string{"\n"}, "\n\r\n.\r\n"},
	} {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		w := &stuffedWriter{w: bw, bol: true}
		for _, s := range tc.writes {
			if _, err := w.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("%q: wrote %q, want %q", tc.writes, out.String(), tc.want)
		}
	}
}

// After CR CR the line may still end: "x CR CR LF . CR LF" is a message
// ending in "x CR CR LF" (as net/textproto reads it). The release took the
// second CR for the middle of a line, missed the end of data and read on
// until the client gave up.
func TestDataReaderCRCR(t *testing.T) {
	for in, want := range map[string]string{
		"x\r\r\n.\r\n":        "x\r\r\n",
		"x\r\r\r\n.\r\n":      "x\r\r\r\n",
		"x\r\ry\r\n.\r\n":     "x\r\ry\r\n",
		"\r\r\n.\r\nNEXT\r\n": "\r\r\n",
	} {
		br := bufio.NewReader(strings.NewReader(in))
		got, err, rest := readAll(&dataReader{r: br, limited: true, n: 1 << 20}, br, 4096)
		if err != nil || string(got) != want || (rest != "" && rest != "NEXT\r\n") {
			t.Errorf("%q: read %q, %v, rest %q; want %q", in, got, err, rest, want)
		}
	}
}
