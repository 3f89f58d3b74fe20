package alias

import (
	"bytes"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestAliasLiveness(t *testing.T) {
	expires := t0.Add(72 * time.Hour)
	tests := []struct {
		name       string
		a          Alias
		now        time.Time
		dead       bool
		canReserve bool
		remaining  int
		limited    bool
		gone       bool // over for the holder too; used up is not
	}{
		{"fresh, no count limit", Alias{Expires: expires}, t0, false, true, 0, false, false},
		{"no count limit, many used", Alias{Expires: expires, Used: 1000}, t0, false, true, 0, false, false},
		{"fresh, limit 5", Alias{Expires: expires, MaxUsage: 5}, t0, false, true, 5, true, false},
		{"some used and pending", Alias{Expires: expires, MaxUsage: 5, Used: 2, Pending: 1}, t0, false, true, 2, true, false},
		{"all reserved, none delivered", Alias{Expires: expires, MaxUsage: 5, Pending: 5}, t0, false, false, 0, true, false},
		{"all but one delivered, last reserved", Alias{Expires: expires, MaxUsage: 5, Used: 4, Pending: 1}, t0, false, false, 0, true, false},
		{"used up", Alias{Expires: expires, MaxUsage: 5, Used: 5}, t0, true, false, 0, true, false},
		{"over-used clamps remaining", Alias{Expires: expires, MaxUsage: 5, Used: 6, Pending: 1}, t0, true, false, 0, true, false},
		{"a nanosecond before expiry", Alias{Expires: expires}, expires.Add(-time.Nanosecond), false, true, 0, false, false},
		{"at expiry", Alias{Expires: expires}, expires, true, false, 0, false, true},
		{"after expiry", Alias{Expires: expires, MaxUsage: 5}, expires.Add(time.Hour), true, false, 5, true, true},
		{"revoked", Alias{Expires: expires, MaxUsage: 5, Revoked: true}, t0, true, false, 5, true, true},
		{"zero alias", Alias{}, t0, true, false, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Dead(tt.now); got != tt.dead {
				t.Errorf("Dead = %v, want %v", got, tt.dead)
			}
			if got := tt.a.CanReserve(tt.now); got != tt.canReserve {
				t.Errorf("CanReserve = %v, want %v", got, tt.canReserve)
			}
			n, ok := tt.a.Remaining()
			if n != tt.remaining || ok != tt.limited {
				t.Errorf("Remaining = %d, %v; want %d, %v", n, ok, tt.remaining, tt.limited)
			}
			if got := tt.a.Gone(tt.now); got != tt.gone {
				t.Errorf("Gone = %v, want %v", got, tt.gone)
			}
			if tt.gone && !tt.dead {
				t.Error("gone but not dead")
			}
			if tt.canReserve && tt.dead {
				t.Error("a dead alias can reserve")
			}
		})
	}
}

func TestAliasExpiryAcrossZones(t *testing.T) {
	// The same instant in another zone is the same instant.
	a := Alias{Expires: t0}
	east := time.FixedZone("east", 5*3600)
	if !a.Expired(t0.In(east)) {
		t.Error("not expired at its expiry instant seen from another zone")
	}
	if a.Expired(t0.Add(-time.Second).In(east)) {
		t.Error("expired a second early in another zone")
	}
}

func TestToken(t *testing.T) {
	tok := NewToken()
	if len(tok) != 32 { // 24 bytes, unpadded base64
		t.Fatalf("token %q has length %d, want 32", tok, len(tok))
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			t.Fatalf("token %q is not URL-safe base64", tok)
		}
	}
	if other := NewToken(); other == tok {
		t.Fatal("two tokens are equal")
	}

	a := Alias{TokenHash: HashToken(tok)}
	if bytes.Contains(a.TokenHash, []byte(tok)) {
		t.Fatal("the hash holds the token")
	}
	tests := []struct {
		name  string
		token string
		want  bool
	}{
		{"right", tok, true},
		{"empty", "", false},
		{"other token", NewToken(), false},
		{"prefix", tok[:31], false},
		{"longer", tok + "x", false},
		{"case changed", flipCase(tok), false},
	}
	for _, tt := range tests {
		if got := a.TokenMatches(tt.token); got != tt.want {
			t.Errorf("%s: TokenMatches = %v, want %v", tt.name, got, tt.want)
		}
	}

	// An alias without a stored hash matches nothing, not even the empty
	// token or the hash of the empty string.
	var none Alias
	if none.TokenMatches("") || none.TokenMatches(tok) {
		t.Error("an alias without a token hash matched")
	}
	empty := Alias{TokenHash: HashToken("")}
	if empty.TokenMatches("") {
		t.Error("the empty token matched")
	}
}

func flipCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
