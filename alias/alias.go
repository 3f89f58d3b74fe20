// Package alias is the domain of tempalias: what an alias is, when it is
// dead, how its id and token are made and which requests and addresses are
// acceptable. It does no I/O beyond reading crypto/rand.
package alias

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"time"
)

// ErrNotFound is the answer for an id without a live alias: unknown,
// expired, used up and revoked are deliberately alike, so that neither
// front end becomes an oracle for guessing aliases.
var ErrNotFound = errors.New("alias not found")

// ErrExhausted is the answer when an alias is alive but every remaining
// use is reserved by transactions still under way; a refund may free one.
var ErrExhausted = errors.New("alias has no use left to reserve")

// ErrTargetFull is the answer when a target already has as many live
// aliases as Spec.MaxLive allows.
var ErrTargetFull = errors.New("target has the most live aliases allowed")

// Alias is one temporary forwarding address.
//
// Usage is counted in two parts: Used is the number of messages the
// smarthost accepted; Pending is the number of uses reserved at RCPT TO by
// transactions that have not ended yet. A use is available only while
// Used+Pending < MaxUsage, so concurrent sessions can never together deliver
// more than MaxUsage messages.
type Alias struct {
	ID       string    `json:"id"`
	Target   string    `json:"target"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	MaxUsage int       `json:"max_usage,omitempty"` // 0: no limit by count
	Used     int       `json:"used,omitempty"`
	Pending  int       `json:"pending,omitempty"`
	Revoked  bool      `json:"revoked,omitempty"`
	// Refused counts the messages refused at RCPT TO after every use was
	// delivered, while the alias had not yet expired: what its holder
	// learns by keeping the alias past its last use.
	Refused int `json:"refused,omitempty"`
	// Unverified marks an alias whose target has not confirmed that it
	// wants mail from us; it refuses mail like an unknown alias.
	Unverified bool   `json:"unverified,omitempty"`
	TokenHash  []byte `json:"token_hash"`
	// AllowFrom, when not empty, lists the only senders whose mail it
	// takes (see SenderAllowed): lower-case domains and addresses.
	AllowFrom []string `json:"allow_from,omitempty"`
	// LockSender makes the domain of the first message delivered its
	// AllowFrom, while that is empty (see LockTo).
	LockSender bool `json:"lock_sender,omitempty"`
	// LockGen counts the locks lock-sender set; LockHeld is how many
	// messages committed under the current one (the one that set it and
	// those its domain let through since) are still counted as
	// delivered, 0 when AllowFrom is no lock (see ReleaseLock).
	LockGen  uint64 `json:"-"`
	LockHeld int    `json:"-"`
	// HourStart and HourUsed are the hourly window of the messages it
	// relayed (see HourTaken): when the window opened, and how many
	// messages were delivered in it.
	HourStart time.Time `json:"-"`
	HourUsed  int       `json:"-"`
}

// Expired reports whether the alias has run out of time at now.
func (a *Alias) Expired(now time.Time) bool {
	return !now.Before(a.Expires)
}

// UsedUp reports whether every use has been delivered. Pending reservations
// do not count: they may still be refunded.
func (a *Alias) UsedUp() bool {
	return a.MaxUsage > 0 && a.Used >= a.MaxUsage
}

// Dead reports whether the alias can never deliver again: it expired, its
// uses are delivered, or it was revoked.
func (a *Alias) Dead(now time.Time) bool {
	return a.Revoked || a.Expired(now) || a.UsedUp()
}

// Gone reports whether the alias is over for its holder too: expired or
// revoked. A used-up alias is dead for mail but stays visible to its
// token holder until it expires, with the count of mail refused since.
func (a *Alias) Gone(now time.Time) bool {
	return a.Revoked || a.Expired(now)
}

// CanReserve reports whether one more use may be reserved at now.
func (a *Alias) CanReserve(now time.Time) bool {
	if a.Dead(now) {
		return false
	}
	return a.MaxUsage == 0 || a.Used+a.Pending < a.MaxUsage
}

// Remaining is the number of uses not yet delivered or reserved, and false
// when the alias has no limit by count.
func (a *Alias) Remaining() (int, bool) {
	if a.MaxUsage == 0 {
		return 0, false
	}
	return max(a.MaxUsage-a.Used-a.Pending, 0), true
}

// HashToken is how a token is kept: only its hash is stored. Tokens carry
// 192 random bits, so a fast hash is enough; there is nothing to brute-force.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// TokenMatches compares token against the stored hash in constant time.
func (a *Alias) TokenMatches(token string) bool {
	if token == "" || len(a.TokenHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(HashToken(token), a.TokenHash) == 1
}
