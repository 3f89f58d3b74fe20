package boltstore

import (
	"github.com/tempalias/tempalias/store"
	"io"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// What a crash leaves in the reserved bucket is gone after the next Open,
// uses given back (the suite's StaleReservationsReleased checks the
// uses): a reopen never walks it again.
func TestReservedBucketEmptiedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a, _ := mustCreate(t, s, spec(3*day, 2))
		if _, err := s.Reserve(bg, a.ID, t0); err != nil {
			t.Fatal(err)
		}
	}
	reserved := func() (n int) {
		mustView(t, s.db, func(tx *bolt.Tx) error { n = tx.Bucket(bucketReserved).Stats().KeyN; return nil })
		return n
	}
	if n := reserved(); n != 3 {
		t.Fatalf("%d reservations filed, want 3", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if n := reserved(); n != 0 {
		t.Errorf("%d reservations filed after reopen, want 0", n)
	}
}

// A file written by the landed tree before format 3 (testdata/format2.db,
// made with that tree's store package) opens with every alias kept, its
// stranded reservation released, its tombstone kept and its confirmation
// token working.
func TestMigrateFormat2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	copyFile(t, "testdata/format2.db", path)
	// What the generator printed for the file.
	const (
		live, liveToken = "8lpruw", "-BbdZ6tRo5ONTw-XYMdimwkA3i74ZAJp" // max-usage 5, 1 delivered, 1 reserved and never settled
		usedUp          = "oohhdg"                                     // max-usage 1, delivered
		unlimited       = "tav2pg"
		pending         = "vj4z1w"
		confirm         = "gXQz6UezGlKo_I_dSazfGZa0scVUcaB-"
		swept           = "xynov0"
	)
	s, err := Open(path, Options{IDMinLength: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a, err := s.Authorized(bg, live, liveToken, t0)
	if err != nil || a.Used != 1 || a.Pending != 0 || a.MaxUsage != 5 || a.Target != "live@example.com" {
		t.Fatalf("live alias after migration: %+v, %v; want used 1, pending 0 (released)", a, err)
	}
	if a, err := s.Held(bg, usedUp, t0); err != nil || !a.UsedUp() {
		t.Errorf("used-up alias after migration: %+v, %v", a, err)
	}
	if _, err := s.Reserve(bg, usedUp, t0); err != store.ErrNotFound {
		t.Errorf("Reserve of the used-up alias = %v", err)
	}
	if _, err := s.Reserve(bg, unlimited, t0); err != nil {
		t.Errorf("Reserve of the unlimited alias = %v", err)
	}
	if _, err := s.Reserve(bg, pending, t0); err != store.ErrNotFound {
		t.Errorf("pending alias relays before confirmation: %v", err)
	}
	if a, err := s.Confirm(bg, confirm, t0, day); err != nil || a.ID != pending {
		t.Errorf("Confirm = %+v, %v", a, err)
	}
	if _, err := s.Reserve(bg, pending, t0); err != nil {
		t.Errorf("confirmed alias: %v", err)
	}
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if f := fileFormat(tx); f != format {
			t.Errorf("format %d after migration, want %d", f, format)
		}
		if v := tx.Bucket(bucketAliases).Get([]byte(swept)); !isTombstone(v) {
			t.Errorf("swept id %s: %q, want its tombstone", swept, v)
		}
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if !isTombstone(v) && v[0] != headerBinary {
				t.Errorf("record %s not rewritten: version %d", k, v[0])
			}
			return nil
		})
	})
	if st := mustStats(t, s); st.Issued != 5 || st.Aliases != 4 {
		t.Errorf("Stats after migration: %+v", st)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
