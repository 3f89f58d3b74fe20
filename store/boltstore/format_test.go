package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// rewriteFile changes a closed store file with bbolt alone, in one
// transaction.
func rewriteFile(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(fn), db.Close()); err != nil {
		t.Fatal(err)
	}
}

// newFile creates an empty store file and closes it.
func newFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tempalias.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// toFormat1 rewrites a closed store file into the layout of format 1:
// every issued id a key of the "ids" bucket, swept aliases absent from
// the aliases bucket, no format key.
func toFormat1(t *testing.T, path string) {
	t.Helper()
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		ids, err := tx.CreateBucket(bucketOldIDs)
		if err != nil {
			return err
		}
		aliases := tx.Bucket(bucketAliases)
		var swept [][]byte
		if err := aliases.ForEach(func(k, v []byte) error {
			if isTombstone(v) {
				swept = append(swept, append([]byte(nil), k...))
			}
			return ids.Put(append([]byte(nil), k...), present)
		}); err != nil {
			return err
		}
		for _, k := range swept {
			if err := aliases.Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyFormat)
	})
}

// TestMigrateFormat1: a file whose issued ids live in their own bucket
// opens with every swept id turned into a tombstone, live aliases intact
// and no id issued twice.
func TestMigrateFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	opts := Options{IDMinLength: 1, GuessProbability: 1}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	live, token := mustCreate(t, s, spec(3*day, 0))
	var swept []string
	for range 20 {
		a, _ := mustCreate(t, s, spec(time.Hour, 0))
		swept = append(swept, a.ID)
	}
	if n, err := s.Sweep(bg, t0.Add(time.Hour), 0); err != nil || n != 20 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	before := mustStats(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	toFormat1(t, path)

	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOldIDs) != nil {
			return errors.New("ids bucket still there")
		}
		if v := tx.Bucket(bucketMeta).Get(keyFormat); len(v) != 8 || binary.BigEndian.Uint64(v) != format {
			return fmt.Errorf("format key %x", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range swept {
		checkGone(t, s, id)
	}
	if got, err := s.Authorized(bg, live.ID, token, t0); err != nil || got.ID != live.ID {
		t.Fatalf("live alias after the migration: %+v, %v", got, err)
	}
	if st := mustStats(t, s); st != before {
		t.Fatalf("Stats %+v after the migration, %+v before", st, before)
	}
	checkSweepIndex(t, s)
	// With one-character ids allowed, new ones crowd the same small
	// space: none may be a swept one.
	old := strings.Join(swept, " ") + " " + live.ID
	for range 50 {
		a, _ := mustCreate(t, s, spec(day, 0))
		if strings.Contains(" "+old+" ", " "+a.ID+" ") {
			t.Fatalf("id %s issued again", a.ID)
		}
	}
}

// TestMigrateLargeFormat1 migrates more ids than one transaction takes.
func TestMigrateLargeFormat1(t *testing.T) {
	path := newFile(t)
	toFormat1(t, path)
	const n = 25000
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		ids := tx.Bucket(bucketOldIDs)
		for i := range n {
			if err := ids.Put(fmt.Appendf(nil, "id%06d", i), present); err != nil {
				return err
			}
		}
		return nil
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tombs := 0
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAliases).ForEach(func(_, v []byte) error {
			if isTombstone(v) {
				tombs++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if tombs != n {
		t.Fatalf("%d tombstones, want %d", tombs, n)
	}
}

// A file written by a later format is refused, not misread.
func TestNewerFormatRefused(t *testing.T) {
	path := newFile(t)
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, format+1))
	})
	if s, err := Open(path, Options{}); err == nil {
		s.Close()
		t.Fatal("opened a file of a later format")
	} else if !strings.Contains(err.Error(), "newer tempalias") {
		t.Fatalf("error %q does not say why", err)
	}
}

// A file written by the landed tree of format 3 (testdata/format3.db:
// records with a header and JSON, one reservation never settled) opens
// with every record rewritten as a binary one and every field kept, the
// stranded reservation released, and works.
func TestMigrateFormat3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	copyFile(t, "testdata/format3.db", path)
	// What the generator printed for the file; t0 was its clock.
	const (
		live, liveToken = "jr7lpf", "6jO_A2Z4pUM0xVN6xG_aeq73xOX9LJ4_" // max-usage 5, 1 delivered, 1 reserved and never settled, allow-from
		usedUp          = "e2fbmj"                                     // max-usage 1, lock-sender, delivered from sender.example, 1 refused
		unlimited       = "78nwps"
		pending         = "vxwznm"
		confirm         = "Db5Juuh4jkv1PsYC15IdlgQ9MdL7tbfL"
		swept           = "ogqnui"
		revoked         = "hgfumb"
	)
	exp := t0.Add(30 * day)
	var before map[string]*record
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		before = records(t, tx)
		return nil
	})
	s, err := Open(path, Options{IDMinLength: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if f := fileFormat(tx); f != format {
			t.Errorf("format %d after migration, want %d", f, format)
		}
		if v := tx.Bucket(bucketAliases).Get([]byte(swept)); !isTombstone(v) {
			t.Errorf("swept id %s: %q, want its tombstone", swept, v)
		}
		if n := tx.Bucket(bucketReserved).Stats().KeyN; n != 0 {
			t.Errorf("%d reservations still filed", n)
		}
		if err := tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if !isTombstone(v) && v[0] != headerBinary {
				t.Errorf("record %s not rewritten: version %d", k, v[0])
			}
			return nil
		}); err != nil {
			return err
		}
		// Every field as format 3 had it, but the released use.
		after := records(t, tx)
		before[live].Pending--
		if !reflect.DeepEqual(after, before) {
			t.Errorf("records after the migration\n%+v\nbefore\n%+v", after, before)
		}
		return nil
	})
	if len(before) != 5 {
		t.Fatalf("%d records in the file, want 5", len(before))
	}

	a, err := s.Authorized(bg, live, liveToken, t0)
	want := alias.Alias{ID: live, Target: "live@example.com", Created: t0, Expires: exp, MaxUsage: 5, Used: 1,
		AllowFrom: []string{"example.org", "a@example.net"}}
	if err != nil || a.TokenHash == nil {
		t.Fatalf("Authorized(live) = %+v, %v", a, err)
	}
	a.TokenHash = nil
	if !reflect.DeepEqual(a, want) {
		t.Errorf("live alias after the migration:\n%+v\nwant\n%+v", a, want)
	}
	if a, err := s.Held(bg, usedUp, t0); err != nil || !a.UsedUp() || a.Refused != 1 || !a.LockSender ||
		!reflect.DeepEqual(a.AllowFrom, []string{"sender.example"}) {
		t.Errorf("used-up alias after the migration: %+v, %v", a, err)
	}
	if _, err := s.Reserve(bg, usedUp, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve of the used-up alias = %v", err)
	}
	if _, err := s.Reserve(bg, revoked, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve of the revoked alias = %v", err)
	}
	if _, err := s.Reserve(bg, live, t0, store.From("x@elsewhere.example")); !errors.Is(err, store.ErrSenderNotAllowed) {
		t.Errorf("Reserve of the live alias from a sender allow-from refuses = %v", err)
	}
	if _, err := s.Reserve(bg, unlimited, t0); err != nil {
		t.Errorf("Reserve of the unlimited alias = %v", err)
	}
	if _, err := s.Reserve(bg, pending, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pending alias relays before confirmation: %v", err)
	}
	if a, err := s.Confirm(bg, confirm, t0, day); err != nil || a.ID != pending {
		t.Errorf("Confirm = %+v, %v", a, err)
	}
	// All four remaining uses of the live alias, and no fifth.
	for i := range 4 {
		res, err := s.Reserve(bg, live, t0, store.From("x@example.org"))
		if err != nil {
			t.Fatalf("Reserve %d of the live alias: %v", i, err)
		}
		if err := res.Commit(bg, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(bg, live, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a sixth use of the live alias: %v", err)
	}
	if st, err := s.Stats(bg); err != nil || st.Issued != 6 || st.Aliases != 5 {
		t.Errorf("Stats after migration: %+v, %v", st, err)
	}
}

// records decodes every record of tx's aliases bucket.
func records(t *testing.T, tx *bolt.Tx) map[string]*record {
	t.Helper()
	m := make(map[string]*record)
	err := tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
		if isTombstone(v) {
			return nil
		}
		r, err := decode(k, v)
		if err != nil {
			return err
		}
		m[string(k)] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrateLargeFormat3 rewrites more format 3 records than one
// transaction takes.
func TestMigrateLargeFormat3(t *testing.T) {
	path := newFile(t)
	const n = 25000
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		aliases := tx.Bucket(bucketAliases)
		for i := range n {
			r := &record{Alias: alias.Alias{ID: fmt.Sprintf("id%06d", i), Target: "t@example.com", Created: t0, Expires: t0.Add(day), MaxUsage: i % 3}}
			if err := aliases.Put([]byte(r.ID), encodeFormat3(r)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, 3))
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if got := len(records(t, tx)); got != n {
			t.Errorf("%d records, want %d", got, n)
		}
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if v[0] != headerBinary {
				t.Fatalf("record %s not rewritten: version %d", k, v[0])
			}
			return nil
		})
	})
}
