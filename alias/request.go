package alias

import (
	"fmt"
	"strings"
	"time"
)

// Limits bound what a creation request may ask for.
type Limits struct {
	DefaultDays int // used when a request names no days
	MaxDays     int
	MaxUsage    int
}

// Request is a creation request as a client sent it; nil means absent.
type Request struct {
	Target   string
	Days     *int
	MaxUsage *int
}

// Spec is a checked request: what the store needs to create an alias.
type Spec struct {
	Target   string
	Expires  time.Time
	MaxUsage int // 0: no limit by count
	// MaxLive refuses the alias (ErrTargetFull) when its target already
	// has this many live aliases; 0: no limit.
	MaxLive int
}

// TargetKey is the form of a target address that identifies its owner for
// verification and per-target limits: the whole address in lower case.
func TargetKey(target string) string { return strings.ToLower(target) }

// InvalidError is a request that breaks a rule; its text is meant for the
// person who sent it.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Check validates r against the limits and the service's own domains and
// computes the expiry from now.
func (l Limits) Check(r Request, domains []string, now time.Time) (Spec, error) {
	// Spaces around a pasted address are forgiven; CR, LF and other
	// controls are not, anywhere.
	target := strings.Trim(r.Target, " \t")
	if target == "" {
		return Spec{}, &InvalidError{"target", "is required"}
	}
	addr, err := ParseAddress(target)
	if err != nil {
		return Spec{}, &InvalidError{"target", strings.TrimPrefix(err.Error(), ErrAddress.Error()+": ") + " (want a plain address like you@example.com)"}
	}
	if !strings.Contains(addr.Domain, ".") {
		return Spec{}, &InvalidError{"target", "domain must be fully qualified, like example.com"}
	}
	if InDomains(addr.Domain, domains) {
		return Spec{}, &InvalidError{"target", "must not be an address of this service"}
	}
	days := l.DefaultDays
	if r.Days != nil {
		days = *r.Days
		if days < 1 || days > l.MaxDays {
			return Spec{}, &InvalidError{"days", fmt.Sprintf("must be a whole number from 1 to %d", l.MaxDays)}
		}
	}
	maxUsage := 0
	if r.MaxUsage != nil {
		maxUsage = *r.MaxUsage
		if maxUsage < 1 || maxUsage > l.MaxUsage {
			return Spec{}, &InvalidError{"max-usage", fmt.Sprintf("must be a whole number from 1 to %d", l.MaxUsage)}
		}
	}
	return Spec{
		Target:   addr.String(),
		Expires:  now.UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second),
		MaxUsage: maxUsage,
	}, nil
}
