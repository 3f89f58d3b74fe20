package logtext

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// needsQuoting is slog's rule for a text key or value: it is quoted
// (strconv.Quote) when empty or when it holds a space, '=', '"', an ASCII
// control character, invalid UTF-8 (or U+FFFD itself), or a Unicode space
// or non-printing character. A backslash and DEL (0x7f) are left alone,
// as slog leaves them.
func needsQuoting[S string | []byte](s S) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b < ' ' || b == ' ' || b == '=' || b == '"' {
				return true
			}
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

func decodeRune[S string | []byte](s S) (rune, int) {
	switch s := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(s)
	case []byte:
		return utf8.DecodeRune(s)
	}
	panic("unreachable")
}

// appendQuote is strconv.AppendQuote(b, s), faster on the plain ASCII
// that most of a log line is: strconv escapes each rune on its own, so
// the leading run of bytes it copies as they are (printable ASCII but '"'
// and '\\') is copied here in one go, and the rest quoted by strconv.
func appendQuote[S string | []byte](b []byte, s S) []byte {
	i := 0
	for i < len(s) && s[i] >= ' ' && s[i] < utf8.RuneSelf-1 && s[i] != '"' && s[i] != '\\' {
		i++
	}
	b = append(b, '"')
	b = append(b, s[:i]...)
	if i == len(s) {
		return append(b, '"')
	}
	// The rest, quoted, without its opening quote.
	n := len(b)
	b = strconv.AppendQuote(b, string(s[i:]))
	return append(b[:n], b[n+1:]...)
}
