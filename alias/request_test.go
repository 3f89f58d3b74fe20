package alias

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLimitsCheck(t *testing.T) {
	limits := Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100}
	domains := []string{"tempalias.example", "alias.example.org"}
	// A now with a zone and sub-second part: the expiry must come out in
	// UTC, on a whole second.
	now := time.Date(2030, 6, 1, 12, 0, 0, 750_000_000, time.FixedZone("CEST", 2*3600))
	day := 24 * time.Hour
	base := now.UTC().Truncate(time.Second)

	tests := []struct {
		name      string
		req       Request
		want      Spec
		wantField string // non-empty: the check must fail on this field
	}{
		{"defaults", Request{Target: "t@example.com"}, Spec{Target: "t@example.com", Expires: base.Add(3 * day), MaxUsage: 0}, ""},
		{"days and max-usage", Request{Target: "t@example.com", Days: ptr(7), MaxUsage: ptr(5)}, Spec{Target: "t@example.com", Expires: base.Add(7 * day), MaxUsage: 5}, ""},
		{"lowest bounds", Request{Target: "t@example.com", Days: ptr(1), MaxUsage: ptr(1)}, Spec{Target: "t@example.com", Expires: base.Add(day), MaxUsage: 1}, ""},
		{"highest bounds", Request{Target: "t@example.com", Days: ptr(60), MaxUsage: ptr(100)}, Spec{Target: "t@example.com", Expires: base.Add(60 * day), MaxUsage: 100}, ""},
		{"target normalised", Request{Target: "  Me+x@Example.COM\t"}, Spec{Target: "Me+x@example.com", Expires: base.Add(3 * day), MaxUsage: 0}, ""},
		{"trailing CRLF is refused", Request{Target: "t@example.com\r\n"}, Spec{}, "target"},
		{"subdomain of ours is someone else's", Request{Target: "t@mail.tempalias.example"}, Spec{Target: "t@mail.tempalias.example", Expires: base.Add(3 * day), MaxUsage: 0}, ""},

		{"days 0", Request{Target: "t@example.com", Days: ptr(0)}, Spec{}, "days"},
		{"days negative", Request{Target: "t@example.com", Days: ptr(-1)}, Spec{}, "days"},
		{"days over max", Request{Target: "t@example.com", Days: ptr(61)}, Spec{}, "days"},
		{"days huge", Request{Target: "t@example.com", Days: ptr(1 << 40)}, Spec{}, "days"},
		{"max-usage 0", Request{Target: "t@example.com", MaxUsage: ptr(0)}, Spec{}, "max-usage"},
		{"max-usage negative", Request{Target: "t@example.com", MaxUsage: ptr(-5)}, Spec{}, "max-usage"},
		{"max-usage over max", Request{Target: "t@example.com", MaxUsage: ptr(101)}, Spec{}, "max-usage"},
		{"target missing", Request{}, Spec{}, "target"},
		{"target blank", Request{Target: " \t "}, Spec{}, "target"},
		{"target without domain", Request{Target: "t"}, Spec{}, "target"},
		{"target without local", Request{Target: "@example.com"}, Spec{}, "target"},
		{"target in own domain", Request{Target: "x@tempalias.example"}, Spec{}, "target"},
		{"target in own domain, other case", Request{Target: "x@TempAlias.Example"}, Spec{}, "target"},
		{"target in second own domain", Request{Target: "x@ALIAS.example.org"}, Spec{}, "target"},
		{"target unqualified domain", Request{Target: "root@localhost"}, Spec{}, "target"},
		{"target with CRLF inside", Request{Target: "t@example.com\r\nRCPT TO:<x@y.example>"}, Spec{}, "target"},
		{"target with LF in local", Request{Target: "t\n@example.com"}, Spec{}, "target"},
		{"target with CR in domain", Request{Target: "t@exa\rmple.com"}, Spec{}, "target"},
		{"target with NUL", Request{Target: "t@example.com\x00"}, Spec{}, "target"},
		{"target with display name", Request{Target: "T <t@example.com>"}, Spec{}, "target"},
		{"target address literal", Request{Target: "t@[192.0.2.1]"}, Spec{}, "target"},
		{"target source route", Request{Target: "@a.example,@b.example:t@c.example"}, Spec{}, "target"},
		{"bad target reported before bad days", Request{Target: "nope", Days: ptr(0)}, Spec{}, "target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := limits.Check(tt.req, domains, now)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if got.Target != tt.want.Target || !got.Expires.Equal(tt.want.Expires) || got.MaxUsage != tt.want.MaxUsage {
					t.Fatalf("Check = %+v, want %+v", got, tt.want)
				}
				if got.Expires.Location() != time.UTC {
					t.Errorf("Expires in %v, want UTC", got.Expires.Location())
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = %+v, want an error on %s", got, tt.wantField)
			}
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("error %T %v is not an *InvalidError", err, err)
			}
			if inv.Field != tt.wantField {
				t.Errorf("error on field %q (%v), want %q", inv.Field, err, tt.wantField)
			}
			if inv.Reason == "" || !strings.HasPrefix(err.Error(), inv.Field+": ") {
				t.Errorf("error text %q", err.Error())
			}
			// The reason is shown to the client: it must not echo control
			// characters back nor leak the Go error prefix twice.
			if strings.ContainsAny(inv.Reason, "\r\n\x00") || strings.Contains(inv.Reason, ErrAddress.Error()) {
				t.Errorf("reason %q", inv.Reason)
			}
			if !reflect.DeepEqual(got, Spec{}) {
				t.Errorf("Check returned %+v along with an error", got)
			}
		})
	}
}

func TestLimitsCheckBoundsInMessage(t *testing.T) {
	limits := Limits{DefaultDays: 3, MaxDays: 14, MaxUsage: 9}
	_, err := limits.Check(Request{Target: "t@example.com", Days: ptr(15)}, nil, t0)
	if err == nil || !strings.Contains(err.Error(), "1 to 14") {
		t.Errorf("days error %v does not name the range", err)
	}
	_, err = limits.Check(Request{Target: "t@example.com", MaxUsage: ptr(10)}, nil, t0)
	if err == nil || !strings.Contains(err.Error(), "1 to 9") {
		t.Errorf("max-usage error %v does not name the range", err)
	}
}

func ptr(n int) *int { return &n }
