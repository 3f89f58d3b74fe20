package smtpd

import (
	"bytes"
	"strings"
	"testing"
)

// The header filter at every chunk boundary: loops, From rewriting and
// everything else passing byte for byte.
func TestHeaderFilter(t *testing.T) {
	isLoop := func(v string) bool { return strings.EqualFold(strings.Trim(v, "<>"), "abc@tempalias.test") }
	long := strings.Repeat("x", maxHeaderLine)
	for _, tc := range []struct {
		name, in, want string
		from           string // RewriteFrom's address
		err            error
	}{
		{name: "plain", in: "A: b\r\nC: d\r\n\r\nbody\r\n", want: "A: b\r\nC: d\r\n\r\nbody\r\n"},
		{name: "other Delivered-To", in: "Delivered-To: xyz@tempalias.test\r\n\r\nbody\r\n", want: "Delivered-To: xyz@tempalias.test\r\n\r\nbody\r\n"},
		{name: "loop", in: "A: b\r\nDelivered-To: abc@tempalias.test\r\n\r\nbody\r\n", err: errDeliveredTo},
		{name: "loop, case and brackets", in: "DELIVERED-TO: <ABC@TempAlias.Test>\r\nA: b\r\n\r\nbody\r\n", err: errDeliveredTo},
		{name: "loop, folded", in: "Delivered-To:\r\n  abc@tempalias.test\r\n\r\n", err: errDeliveredTo},
		{name: "loop, last header, no body", in: "Delivered-To: abc@tempalias.test\r\n", err: errDeliveredTo},
		{name: "loop, obsolete space before colon", in: "Delivered-To : abc@tempalias.test\r\n\r\n", err: errDeliveredTo},
		{name: "Delivered-To in the body", in: "A: b\r\n\r\nDelivered-To: abc@tempalias.test\r\n", want: "A: b\r\n\r\nDelivered-To: abc@tempalias.test\r\n"},
		{name: "over-long line stops the examination", in: "A: " + long + "\r\nDelivered-To: abc@tempalias.test\r\n\r\n", want: "A: " + long + "\r\nDelivered-To: abc@tempalias.test\r\n\r\n"},
		{name: "no header section", in: "\r\nbody\r\n", want: "\r\nbody\r\n"},

		{name: "From rewritten", from: "abc@tempalias.test",
			in:   "Subject: s\r\nFrom: Alice Example <alice@example.org>\r\nTo: x\r\n\r\nbody\r\n",
			want: "Subject: s\r\nFrom: \"Alice Example via tempalias\" <abc@tempalias.test>\r\nTo: x\r\nReply-To: Alice Example <alice@example.org>\r\n\r\nbody\r\n"},
		{name: "From without a name, folded", from: "abc@tempalias.test",
			in:   "From:\r\n alice@example.org\r\n\r\nbody\r\n",
			want: "From: \"alice at example.org via tempalias\" <abc@tempalias.test>\r\nReply-To:\r\n alice@example.org\r\n\r\nbody\r\n"},
		{name: "From with an encoded name", from: "abc@tempalias.test",
			in:   "From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\n\r\n",
			want: "From: =?utf-8?q?J=C3=B6rg_via_tempalias?= <abc@tempalias.test>\r\nReply-To: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\n\r\n"},
		{name: "From with quotes in the name", from: "abc@tempalias.test",
			in:   "From: \"Bob \\\"the\\\" Builder\" <b@example.org>\r\n\r\n",
			want: "From: \"Bob \\\"the\\\" Builder via tempalias\" <abc@tempalias.test>\r\nReply-To: \"Bob \\\"the\\\" Builder\" <b@example.org>\r\n\r\n"},
		{name: "Reply-To kept", from: "abc@tempalias.test",
			in:   "From: a@example.org\r\nreply-to: r@example.org\r\n\r\nbody\r\n",
			want: "From: \"a at example.org via tempalias\" <abc@tempalias.test>\r\nreply-to: r@example.org\r\n\r\nbody\r\n"},
		{name: "unparsable From", from: "abc@tempalias.test",
			in:   "From: <<<\r\n\r\n",
			want: "From: \"via tempalias\" <abc@tempalias.test>\r\nReply-To: <<<\r\n\r\n"},
		{name: "no From", from: "abc@tempalias.test",
			in: "Subject: s\r\n\r\nbody\r\n", want: "Subject: s\r\nFrom: <abc@tempalias.test>\r\n\r\nbody\r\n"},
		{name: "headers only, last line without CRLF", from: "abc@tempalias.test",
			in: "From: a@example.org", want: "From: \"a at example.org via tempalias\" <abc@tempalias.test>\r\nReply-To: a@example.org\r\n"},
		{name: "From in the body left alone", from: "abc@tempalias.test",
			in:   "From: a@example.org\r\n\r\nFrom: b@example.org\r\n",
			want: "From: \"a at example.org via tempalias\" <abc@tempalias.test>\r\nReply-To: a@example.org\r\n\r\nFrom: b@example.org\r\n"},
		{name: "over-long line with rewriting", from: "abc@tempalias.test", in: "A: " + long + "\r\nFrom: a@example.org\r\n\r\n", err: errHeaderTooLong},
		{name: "over-long From", from: "abc@tempalias.test", in: "From: a@example.org,\r\n" + strings.Repeat(" b@example.org,\r\n", maxHeldField/17+1) + "\r\n", err: errHeaderTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			step := 1
			if len(tc.in) > 1000 {
				step = 997 // every split point would take too long; these still land anywhere
			}
			for i := 0; i <= len(tc.in); i += step {
				var out bytes.Buffer
				f := &headerFilter{w: &out, loop: isLoop, fromAddr: tc.from}
				_, err := f.Write([]byte(tc.in[:i]))
				if err == nil {
					_, err = f.Write([]byte(tc.in[i:]))
				}
				if err == nil {
					err = f.Close()
				}
				if err != tc.err {
					t.Fatalf("split at %d: %v, want %v", i, err, tc.err)
				}
				if err == nil && out.String() != tc.want {
					t.Fatalf("split at %d:\n got %q\nwant %q", i, out.String(), tc.want)
				}
			}
		})
	}
}

// Without a loop check and without rewriting nothing is held back: a
// header section of any size costs one line of memory.
func TestHeaderFilterBounded(t *testing.T) {
	var out bytes.Buffer
	f := &headerFilter{w: &out, loop: func(string) bool { return false }}
	line := "Delivered-To: " + strings.Repeat("y", 900) + "@example.org\r\n"
	for range 10000 {
		if _, err := f.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if c := cap(f.line) + cap(f.held); c > 4*maxHeaderLine {
		t.Errorf("filter holds %d bytes of buffers", c)
	}
	if out.Len() < 9999*len(line) {
		t.Errorf("filter held back %d bytes", 10000*len(line)-out.Len())
	}
}
