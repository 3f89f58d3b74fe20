package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	s, err := openTest(path, Options{})
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
	s, err := openTest(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	live, token := mustCreate(t, s, spec(3*day, 0))
	var swept []string
	for range 20 {
		a, _ := mustCreate(t, s, spec(time.Hour, 0))
		swept = append(swept, a.ID)
	}
	if n, err := s.Sweep(t0.Add(time.Hour), 0); err != nil || n != 20 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	before := mustStats(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	toFormat1(t, path)

	s, err = openTest(path, opts)
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
	if got, err := s.Authorized(live.ID, token, t0); err != nil || got.ID != live.ID {
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
	s, err := openTest(path, Options{})
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
	if s, err := openTest(path, Options{}); err == nil {
		s.Close()
		t.Fatal("opened a file of a later format")
	} else if !strings.Contains(err.Error(), "newer tempalias") {
		t.Fatalf("error %q does not say why", err)
	}
}
