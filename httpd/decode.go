package httpd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/tempalias/tempalias/alias"
)

// createFields are the only keys a creation request may hold, spelled
// exactly (encoding/json alone would also take "Target" or "DAYS").
var createFields = map[string]bool{"target": true, "days": true, "max-usage": true}

// decodeCreate parses a JSON creation request strictly: one object, known
// keys spelled exactly, each at most once, whole numbers only, nothing
// after the object. Its errors are sentences for the client.
func decodeCreate(body []byte) (alias.Request, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return alias.Request{}, sentence(`The request body is empty; send a JSON object like {"target": "you@example.com"}.`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return alias.Request{}, sentence("The request body must be a JSON object.")
	}
	var req alias.Request
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return alias.Request{}, errBrokenJSON
		}
		key, _ := t.(string)
		if !createFields[key] {
			return alias.Request{}, problem("Unknown field %q; the fields are target, days and max-usage.", key)
		}
		if seen[key] {
			return alias.Request{}, problem("The field %q is given twice.", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return alias.Request{}, errBrokenJSON
		}
		if bytes.Equal(raw, []byte("null")) {
			continue // same as absent
		}
		switch key {
		case "target":
			if err := json.Unmarshal(raw, &req.Target); err != nil {
				return alias.Request{}, sentence("target must be a string holding an email address.")
			}
		case "days":
			if req.Days, err = wholeNumber(key, raw); err != nil {
				return alias.Request{}, err
			}
		case "max-usage":
			if req.MaxUsage, err = wholeNumber(key, raw); err != nil {
				return alias.Request{}, err
			}
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return alias.Request{}, errBrokenJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return alias.Request{}, sentence("There is data after the JSON object.")
	}
	return req, nil
}

var errBrokenJSON = sentence("The request body is not valid JSON.")

// sentence is an error meant for the person who sent the request: a whole
// sentence, capitalised and punctuated, unlike Go's own error strings.
type sentence string

func (s sentence) Error() string { return string(s) }

// problem formats a sentence.
func problem(format string, args ...any) error { return sentence(fmt.Sprintf(format, args...)) }

// wholeNumber accepts a JSON number without fraction or exponent that fits
// an int; "3", 3.0, 0.5 and 1e2 are refused alike.
func wholeNumber(key string, raw json.RawMessage) (*int, error) {
	var n int
	if len(raw) == 0 || raw[0] == '"' || bytes.ContainsAny(raw, ".eE") {
		return nil, problem("%s must be a whole number, like 3.", key)
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, problem("%s must be a whole number, like 3.", key)
	}
	return &n, nil
}
