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
	Target     string
	Days       *int
	MaxUsage   *int
	AllowFrom  []string // nil: absent
	LockSender bool
}

// Spec is a checked request: what the store needs to create an alias.
type Spec struct {
	Target   string
	Expires  time.Time
	MaxUsage int // 0: no limit by count
	// AllowFrom and LockSender as in Alias.
	AllowFrom  []string
	LockSender bool
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
	var allow []string
	if r.AllowFrom != nil {
		if allow, err = CheckAllowFrom(r.AllowFrom); err != nil {
			return Spec{}, err
		}
	}
	return Spec{
		Target:     addr.String(),
		Expires:    expiresIn(now, days),
		MaxUsage:   maxUsage,
		AllowFrom:  allow,
		LockSender: r.LockSender,
	}, nil
}

func expiresIn(now time.Time, days int) time.Time {
	return now.UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
}

// ChangeRequest is a change to an alias as a client sent it (PATCH, or
// the admin command); nil means unchanged. An empty AllowFrom clears it.
type ChangeRequest struct {
	Days      *int
	MaxUsage  *int
	AllowFrom *[]string
}

// Change is a checked ChangeRequest: what the store applies to an alias,
// in the transaction that reads it (see Alias.Apply).
type Change struct {
	Expires   *time.Time
	MaxUsage  *int
	AllowFrom *[]string
}

// CheckChange validates r against the limits, computing a new expiry from
// now. A request that changes nothing is refused: it is most likely a
// misspelt one.
func (l Limits) CheckChange(r ChangeRequest, now time.Time) (Change, error) {
	var c Change
	if r.Days == nil && r.MaxUsage == nil && r.AllowFrom == nil {
		return Change{}, &InvalidError{"change", "names nothing to change; give days, max-usage or allow-from"}
	}
	if r.Days != nil {
		if *r.Days < 1 || *r.Days > l.MaxDays {
			return Change{}, &InvalidError{"days", fmt.Sprintf("must be a whole number from 1 to %d", l.MaxDays)}
		}
		exp := expiresIn(now, *r.Days)
		c.Expires = &exp
	}
	if r.MaxUsage != nil {
		if *r.MaxUsage < 1 || *r.MaxUsage > l.MaxUsage {
			return Change{}, &InvalidError{"max-usage", fmt.Sprintf("must be a whole number from 1 to %d", l.MaxUsage)}
		}
		n := *r.MaxUsage
		c.MaxUsage = &n
	}
	if r.AllowFrom != nil {
		allow, err := CheckAllowFrom(*r.AllowFrom)
		if err != nil {
			return Change{}, err
		}
		c.AllowFrom = &allow
	}
	return c, nil
}

// Apply makes change c to the alias as it is now stored. A new max-usage
// below the uses delivered plus those reserved by transactions under way
// is refused: they may all be delivered. Raising it revives a used-up
// alias.
func (a *Alias) Apply(c Change) error {
	if c.MaxUsage != nil && *c.MaxUsage < a.Used+a.Pending {
		return &InvalidError{"max-usage", fmt.Sprintf("must be at least %d, the messages relayed or under way", a.Used+a.Pending)}
	}
	if c.Expires != nil {
		a.Expires = *c.Expires
	}
	if c.MaxUsage != nil {
		a.MaxUsage = *c.MaxUsage
	}
	if c.AllowFrom != nil {
		a.AllowFrom = append([]string(nil), (*c.AllowFrom)...)
		if len(a.AllowFrom) == 0 {
			a.AllowFrom = nil
		}
		a.LockHeld = 0 // an explicit list, even the lock's own: no refund undoes it
	}
	return nil
}
