package httpd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tempalias/tempalias/alias"
)

// createFields and changeFields are the only keys a creation and a
// change may hold, spelled exactly (encoding/json alone would also take
// "Target" or "DAYS").
var (
	createFields = []string{"target", "days", "max-usage", "allow-from", "lock-sender"}
	changeFields = []string{"days", "max-usage", "allow-from"}
)

// decodeCreate parses a JSON creation request strictly: one object, known
// keys spelled exactly, each at most once, whole numbers only, nothing
// after the object. Its errors are sentences for the client.
func decodeCreate(body []byte) (alias.Request, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return alias.Request{}, sentence(`The request body is empty; send a JSON object like {"target": "you@example.com"}.`)
	}
	var req alias.Request
	err := decodeObject(body, createFields, func(key string, raw json.RawMessage) error {
		var err error
		switch key {
		case "target":
			if err := json.Unmarshal(raw, &req.Target); err != nil {
				return sentence("target must be a string holding an email address.")
			}
		case "days":
			req.Days, err = wholeNumber(key, raw)
		case "max-usage":
			req.MaxUsage, err = wholeNumber(key, raw)
		case "allow-from":
			req.AllowFrom, err = stringList(key, raw)
		case "lock-sender":
			if err := json.Unmarshal(raw, &req.LockSender); err != nil {
				return sentence("lock-sender must be true or false.")
			}
		}
		return err
	})
	return req, err
}

// decodeChange parses a PATCH body as strictly as decodeCreate; an object
// that changes nothing is refused.
func decodeChange(body []byte) (alias.ChangeRequest, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return alias.ChangeRequest{}, sentence(`The request body is empty; send a JSON object like {"days": 7}.`)
	}
	var req alias.ChangeRequest
	err := decodeObject(body, changeFields, func(key string, raw json.RawMessage) error {
		var err error
		switch key {
		case "days":
			req.Days, err = wholeNumber(key, raw)
		case "max-usage":
			req.MaxUsage, err = wholeNumber(key, raw)
		case "allow-from":
			var list []string
			list, err = stringList(key, raw)
			req.AllowFrom = &list
		}
		return err
	})
	if err == nil && req.Days == nil && req.MaxUsage == nil && req.AllowFrom == nil {
		err = sentence("The request changes nothing; give any of days, max-usage and allow-from.")
	}
	return req, err
}

// decodeObject walks one JSON object whose keys must be among fields,
// each at most once, handing each value but null (the same as absent) to
// field; nothing may follow the object.
func decodeObject(body []byte, fields []string, field func(key string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return sentence("The request body must be a JSON object.")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return errBrokenJSON
		}
		key, _ := t.(string)
		if !slices.Contains(fields, key) {
			return problem("Unknown field %q; the fields are %s.", key, listWords(fields))
		}
		if seen[key] {
			return problem("The field %q is given twice.", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return errBrokenJSON
		}
		if bytes.Equal(raw, []byte("null")) {
			continue // same as absent
		}
		if err := field(key, raw); err != nil {
			return err
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return errBrokenJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return sentence("There is data after the JSON object.")
	}
	return nil
}

// listWords is "a, b and c".
func listWords(w []string) string {
	if len(w) < 2 {
		return strings.Join(w, "")
	}
	return strings.Join(w[:len(w)-1], ", ") + " and " + w[len(w)-1]
}

// stringList accepts a JSON array of strings (empty included).
func stringList(key string, raw json.RawMessage) ([]string, error) {
	list := []string{}
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, problem(`%s must be a list of domains or addresses, like ["example.com", "friend@example.org"].`, key)
	}
	return list, nil
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
