package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"time"
)

// hashLength is libsrs2's default hashlength (and hashmin): four base64
// characters, 24 bits of the HMAC.
const hashLength = 4

// hash is libsrs2's srs_hash_create: HMAC-SHA1 keyed with the secret over the
// fields concatenated, each with ASCII upper case lowered (so that an MTA that
// changes the case of the address does not break it), cut to the first
// hashLength characters of its standard base64 encoding.
func hash(key []byte, fields ...string) string {
	m := hmac.New(sha1.New, key)
	for _, f := range fields {
		m.Write(lowerASCII(f))
	}
	sum := m.Sum(nil)
	// Three bytes are exactly four base64 characters, with no padding.
	return base64.StdEncoding.EncodeToString(sum[:3])[:hashLength]
}

// verify reports whether given is the hash of fields under any key.
// As in libsrs2 (srs_hash_check) the comparison ignores case, and a hash
// longer than hashLength is cut to it. Every key is tried and the
// comparisons are constant-time, so timing tells nothing about how close a
// forgery came or which secret matched.
func (r *Rewriter) verify(given string, fields ...string) bool {
	if len(given) < hashLength {
		return false
	}
	g := upperASCII(given[:hashLength])
	ok := 0
	for _, k := range r.keys {
		ok |= subtle.ConstantTimeCompare(g, upperASCII(hash(k, fields...)))
	}
	return ok == 1
}

// stampChars is libsrs2's SRS_TIME_BASECHARS (the RFC 4648 base32 alphabet).
const stampChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// daySlot is the day of t since the Unix epoch, modulo the 1024 days two
// stamp characters can count.
func daySlot(t time.Time) int {
	s := t.Unix()
	d := s / 86400
	if s%86400 < 0 { // floor, for times before 1970
		d--
	}
	return int((d%timeSlots + timeSlots) % timeSlots)
}

// stamp is libsrs2's srs_timestamp_create: the day slot as two base32
// characters, most significant first.
func stamp(t time.Time) string {
	d := daySlot(t)
	return string([]byte{stampChars[d>>5], stampChars[d&31]})
}

// parseStamp is the inverse of stamp; like libsrs2 it ignores case.
func parseStamp(s string) (int, bool) {
	if len(s) != 2 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		var n int
		switch {
		case 'A' <= c && c <= 'Z':
			n = int(c - 'A')
		case '2' <= c && c <= '7':
			n = int(c-'2') + 26
		default:
			return 0, false
		}
		v = v<<5 | n
	}
	return v, true
}

// fresh is libsrs2's srs_timestamp_check: the stamp's age, counted modulo
// the 1024-day cycle, must be at most maxAgeDays. A stamp from even one day
// in the future therefore reads as about 1023 days old and is refused:
// libsrs2 allows no clock skew beyond the current day.
func (r *Rewriter) fresh(then int, now time.Time) bool {
	age := (daySlot(now) - then + timeSlots) % timeSlots
	return age <= r.maxAgeDays
}

func lowerASCII(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}

func upperASCII(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return b
}
