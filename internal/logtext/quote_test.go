package logtext

import (
	"strconv"
	"testing"
)

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "two words", `a"b`, `back\slash`, "tab\t", "del\x7f", "é", "\xff", "\u2028", "nbsp\u00a0", "🙂"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strconv.Quote(s)
		if got := string(appendQuote([]byte("x"), s)); got != "x"+want {
			t.Errorf("appendQuote(%q) = %s, want %s", s, got[1:], want)
		}
		if got := string(appendQuote(nil, []byte(s))); got != want {
			t.Errorf("appendQuote([]byte(%q)) = %s, want %s", s, got, want)
		}
		if needsQuoting(s) != needsQuoting([]byte(s)) {
			t.Errorf("needsQuoting(%q) differs for string and []byte", s)
		}
	})
}
