package alias

import (
	"crypto/rand"
	"encoding/base64"
	"math"
)

// IDAlphabet is what ids are made of: lowercase letters and digits, so an id
// survives any mail system that folds the case of local parts.
const IDAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// MaxIDLength bounds id length; 36^20 ids is far beyond any store.
const MaxIDLength = 20

// NewID returns a uniformly random id of n characters from IDAlphabet.
func NewID(n int) string {
	// rand.Text would do for a fixed length; ids need a chosen length and
	// the base-36 alphabet. Rejection sampling keeps the choice uniform.
	const limit = 256 - 256%len(IDAlphabet)
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails (Go 1.24+): it crashes the program instead
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, IDAlphabet[int(b)%len(IDAlphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}

// IDLength is the id length to use once issued ids exist: the smallest
// length, not below minLength, at which a random guess hits one of
// issued+1 ids with probability below p. Counting every id ever issued, not
// only the live ones, keeps the bound without reading the store.
func IDLength(issued uint64, minLength int, p float64) int {
	n := max(minLength, 1)
	if !(p > 0 && p <= 1) { // also catches NaN, which would stop ids growing
		p = 1e-6
	}
	need := float64(issued+1) / p
	for n < MaxIDLength && math.Pow(float64(len(IDAlphabet)), float64(n)) < need {
		n++
	}
	return n
}

// NewToken returns a management token: 192 random bits, URL-safe.
func NewToken() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidID reports whether s could be an id; it lets callers refuse junk
// before touching the store.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
