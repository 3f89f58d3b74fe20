package alias

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// MaxAllowFrom bounds the entries of an alias's allow-from list.
const MaxAllowFrom = 10

// CheckAllowFrom validates an allow-from list and returns it in the form
// it is kept and matched in: lower case, each entry once. An entry is a
// domain (it matches that domain and its subdomains) or a whole address.
func CheckAllowFrom(entries []string) ([]string, error) {
	if len(entries) > MaxAllowFrom {
		return nil, &InvalidError{"allow-from", fmt.Sprintf("holds %d entries; at most %d are allowed", len(entries), MaxAllowFrom)}
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		norm, err := allowEntry(strings.Trim(e, " \t"))
		if err != nil {
			return nil, &InvalidError{"allow-from", fmt.Sprintf("entry %q is neither a domain like example.com nor an address: %s", e, strings.TrimPrefix(err.Error(), ErrAddress.Error()+": "))}
		}
		if !containsString(out, norm) {
			out = append(out, norm)
		}
	}
	return out, nil
}

func allowEntry(e string) (string, error) {
	if strings.Contains(e, "@") {
		a, err := ParseAddress(e)
		if err != nil {
			return "", err
		}
		if !strings.Contains(a.Domain, ".") {
			return "", addrErr("domain must be fully qualified")
		}
		return strings.ToLower(a.String()), nil
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; c <= ' ' || c >= 0x7f {
			return "", addrErr("contains a space, control or non-ASCII character")
		}
	}
	if err := CheckDomain(e); err != nil {
		return "", err
	}
	if !strings.Contains(e, ".") {
		return "", addrErr("domain must be fully qualified")
	}
	return strings.ToLower(e), nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SenderAllowed reports whether mail from the envelope sender may reach
// the alias: always without an allow-from list; with one, only from a
// listed address or from a listed domain or its subdomains, ignoring
// case. The null sender ("") is never allowed by a list: an alias sends
// no mail, so a bounce to it is backscatter.
func (a *Alias) SenderAllowed(sender string) bool {
	if len(a.AllowFrom) == 0 {
		return true
	}
	s := strings.ToLower(sender)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return false
	}
	domain := s[at+1:]
	for _, e := range a.AllowFrom {
		if strings.Contains(e, "@") {
			if s == e {
				return true
			}
		} else if domain == e || strings.HasSuffix(domain, "."+e) {
			return true
		}
	}
	return false
}

// LockTo applies lock-sender for a message from sender that is being
// delivered: if the alias asks for it and has no allow-from list yet,
// sender's domain becomes the list, a lock of a new generation held by
// this message (see HoldLock). The null sender never locks. It reports
// whether the alias changed.
func (a *Alias) LockTo(sender string) bool {
	if !a.LockSender || len(a.AllowFrom) > 0 {
		return false
	}
	at := strings.LastIndexByte(sender, '@')
	if sender == "" || at < 0 || at == len(sender)-1 {
		return false
	}
	a.AllowFrom = []string{strings.ToLower(sender[at+1:])}
	a.LockGen++
	a.LockHeld = 1
	return true
}

// HoldLock counts one more message being delivered under the lock that
// lock-sender set, which its sender passed: while one such message stays
// delivered, the lock was earned. It returns the lock's generation, or 0
// if AllowFrom is no lock (none, or a list given at creation or by a
// change).
func (a *Alias) HoldLock() uint64 {
	if a.LockHeld <= 0 {
		return 0
	}
	a.LockHeld++
	return a.LockGen
}

// ReleaseLock takes back a message counted under the lock of generation
// gen (by LockTo or HoldLock) that was not delivered after all (the
// smarthost refused it). When no message holds the lock any more, it is
// undone: the next message delivered locks instead. A lock since replaced
// (another generation) or made an explicit list owes the message
// nothing. It reports whether the alias changed.
func (a *Alias) ReleaseLock(gen uint64) bool {
	if gen == 0 || gen != a.LockGen || a.LockHeld <= 0 {
		return false
	}
	if a.LockHeld--; a.LockHeld == 0 {
		a.AllowFrom = nil
	}
	return true
}

// RevokeMAC is the proof in alias id's revoke link: an HMAC of the id
// under the store's link key, so a link cannot be forged, nor its proof
// moved to another alias.
func RevokeMAC(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("revoke\x00"))
	m.Write([]byte(strings.ToLower(id)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// RevokeMACValid reports, in constant time, whether mac is alias id's
// revoke proof under key.
func RevokeMACValid(key []byte, id, mac string) bool {
	if len(key) == 0 {
		return false
	}
	return hmac.Equal([]byte(RevokeMAC(key, id)), []byte(mac))
}
