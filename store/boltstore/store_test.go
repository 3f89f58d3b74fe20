package boltstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// bg is the tests' context: these calls have no deadline to keep.
var bg = context.Background()

// t0 is the tests' clock: every now is derived from it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const day = 24 * time.Hour

func openStore(tb testing.TB, opts Options) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tempalias.db")
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// mustView runs fn in a read transaction of db and fails tb if it fails.
func mustView(tb testing.TB, db *bolt.DB, fn func(*bolt.Tx) error) {
	tb.Helper()
	if err := db.View(fn); err != nil {
		tb.Fatal(err)
	}
}

// spec is a request for an alias that lives for d after t0.
func spec(d time.Duration, maxUsage int) alias.Spec {
	return alias.Spec{Target: "t@example.com", Expires: t0.Add(d), MaxUsage: maxUsage}
}

func mustCreate(tb testing.TB, s *Store, sp alias.Spec) (alias.Alias, string) {
	tb.Helper()
	c, err := s.Create(bg, sp, t0)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	return c.Alias, c.Token
}

// use spends one use of id, as one delivered message: reserved and
// committed at now.
func use(tb testing.TB, s *Store, id string, now time.Time) {
	tb.Helper()
	useAt(tb, s, id, now, now)
}

// useAt is use reserved at one time and committed at another.
func useAt(tb testing.TB, s *Store, id string, reserve, commit time.Time) {
	tb.Helper()
	r, err := s.Reserve(bg, id, reserve)
	if err != nil {
		tb.Fatalf("Reserve(%s): %v", id, err)
	}
	if err := r.Commit(bg, commit); err != nil {
		tb.Fatalf("Commit(%s): %v", id, err)
	}
}

func mustGet(tb testing.TB, s *Store, id string, now time.Time) alias.Alias {
	tb.Helper()
	a, err := s.Get(bg, id, now)
	if err != nil {
		tb.Fatalf("Get(%s): %v", id, err)
	}
	return a
}

func mustStats(tb testing.TB, s *Store) store.Stats {
	tb.Helper()
	st, err := s.Stats(bg)
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return st
}

// lastTx is the id of the last committed write transaction: it moves with
// every write, shared or not, even one that changed nothing.
func lastTx(tb testing.TB, s *Store) int {
	tb.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatalf("View: %v", err)
	}
	return id
}

func sameAlias(tb testing.TB, got, want alias.Alias) {
	tb.Helper()
	if got.ID != want.ID || got.Target != want.Target || !got.Created.Equal(want.Created) ||
		!got.Expires.Equal(want.Expires) || got.MaxUsage != want.MaxUsage || got.Used != want.Used ||
		got.Pending != want.Pending || got.Revoked != want.Revoked || string(got.TokenHash) != string(want.TokenHash) {
		tb.Fatalf("alias = %+v\nwant    %+v", got, want)
	}
}

func TestTokenNeverStored(t *testing.T) {
	s, path := openStore(t, Options{})
	_, token := mustCreate(t, s, spec(day, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), token) {
		t.Fatal("the token is in the data file")
	}
}

func TestIDMinLength(t *testing.T) {
	s, _ := openStore(t, Options{IDMinLength: 11})
	for range 5 {
		if a, _ := mustCreate(t, s, spec(day, 0)); len(a.ID) != 11 {
			t.Fatalf("id %q, want length 11", a.ID)
		}
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	s, path := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(day, 0))

	start := time.Now()
	s2, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say that %s is locked", err, path)
	}
	if elapsed > 5*time.Second {
		t.Errorf("second Open took %v", elapsed)
	}

	// The first store is unharmed, and the lock goes with it.
	mustGet(t, s, a.ID, t0)
	mustCreate(t, s, spec(day, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s3.Close()
	mustGet(t, s3, a.ID, t0)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(dir, "missing", "tempalias.db"),
		garbage,
		dir,
	} {
		s, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded", path)
			continue
		}
		if !strings.HasPrefix(err.Error(), "store: ") {
			t.Errorf("Open(%s): error %q lacks context", path, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(day, 0))
	limited, _ := mustCreate(t, s, spec(day, 1))
	r, err := s.Reserve(bg, limited.ID, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Create(bg, spec(day, 0), t0); err == nil {
		t.Error("Create after Close succeeded")
	}
	if _, err := s.Get(bg, a.ID, t0); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Close = %v, want a store error", err)
	}
	if err := s.Revoke(bg, a.ID, token, t0); err == nil {
		t.Error("Revoke after Close succeeded")
	}
	if err := r.Commit(bg, t0); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := s.Sweep(bg, t0, 0); err == nil {
		t.Error("Sweep after Close succeeded")
	}
	if err := s.Ping(bg); err == nil {
		t.Error("Ping after Close succeeded")
	}
}

// typo changes the last character of token, whatever it is.
func typo(token string) string {
	last := "A"
	if token[len(token)-1] == 'A' {
		last = "B"
	}
	return token[:len(token)-1] + last
}

// Anyone may send a revocation with a guessed id or token: those are
// answered from a read transaction, without a write and its fsync.
func TestRevokeGuessesWriteNothing(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(3*day, 5))
	_, otherToken := mustCreate(t, s, spec(3*day, 5))
	for _, tt := range []struct {
		name, id, token string
	}{
		{"empty token", a.ID, ""},
		{"other alias's token", a.ID, otherToken},
		{"token with a typo", a.ID, typo(token)},
		{"unknown id", "zzzzzz", token},
		{"invalid id", "ZZ", token},
		{"empty id", "", token},
	} {
		before := lastTx(t, s)
		if err := s.Revoke(bg, tt.id, tt.token, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: Revoke = %v, want store.ErrNotFound", tt.name, err)
		}
		if lastTx(t, s) != before {
			t.Errorf("%s: Revoke wrote to the store", tt.name)
		}
	}
}

// Without a count to protect, a reservation of an unlimited alias and
// its refund write nothing; only the delivery is counted.
func TestReserveUnlimitedWritesNothing(t *testing.T) {
	s, _ := openStore(t, Options{})
	b, _ := mustCreate(t, s, spec(day, 0))
	before := lastTx(t, s)
	r, err := s.Reserve(bg, b.ID, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	if lastTx(t, s) != before {
		t.Fatal("Reserve and Refund of an unlimited alias wrote to the store")
	}
	if r, err = s.Reserve(bg, b.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(bg, t0); err != nil || lastTx(t, s) == before {
		t.Fatalf("Commit of an unlimited alias: %v, wrote %v", err, lastTx(t, s) != before)
	}
	if got := mustGet(t, s, b.ID, t0); got.Used != 1 || got.Pending != 0 {
		t.Fatalf("after one delivery: used %d pending %d", got.Used, got.Pending)
	}
}

func TestReserveDeadWritesNothing(t *testing.T) {
	s, _ := openStore(t, Options{})
	expired, _ := mustCreate(t, s, spec(day, 0))
	revoked, token := mustCreate(t, s, spec(day, 0))
	if err := s.Revoke(bg, revoked.ID, token, t0); err != nil {
		t.Fatal(err)
	}
	usedUp, _ := mustCreate(t, s, spec(day, 1))
	use(t, s, usedUp.ID, t0)
	swept, _ := mustCreate(t, s, spec(time.Hour, 0))
	// Sweeps the revoked and the hour-long alias; the used-up one stays
	// until it expires.
	if n, err := s.Sweep(bg, t0.Add(time.Hour), 0); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2", n, err)
	}

	tests := []struct {
		name string
		id   string
		now  time.Time
	}{
		{"expired", expired.ID, t0.Add(day)},
		{"revoked", revoked.ID, t0},
		{"used up", usedUp.ID, t0},
		{"swept", swept.ID, t0.Add(time.Hour)},
		{"unknown", "zzzzzz", t0},
		{"invalid", "NOPE!", t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := lastTx(t, s)
			if got, err := s.Reserve(bg, tt.id, tt.now); !errors.Is(err, store.ErrNotFound) || got != nil {
				t.Fatalf("Reserve = %+v, %v; want store.ErrNotFound", got, err)
			}
			if after := lastTx(t, s); after != before {
				t.Fatalf("Reserve on a dead alias wrote: tx %d -> %d", before, after)
			}
		})
	}
}

func TestBackup(t *testing.T) {
	s, _ := openStore(t, Options{})
	type created struct {
		a     alias.Alias
		token string
	}
	var before []created
	for i := range 50 {
		a, token := mustCreate(t, s, spec(time.Duration(i+1)*day, 3))
		before = append(before, created{a, token})
	}

	// Writers keep going while the backup runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var during []string
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.Create(bg, spec(day, 0), t0)
				if err != nil {
					t.Errorf("Create during backup: %v", err)
					return
				}
				mu.Lock()
				during = append(during, c.Alias.ID)
				mu.Unlock()
			}
		})
	}

	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(bg, f)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	if fi, err := os.Stat(backup); err != nil || fi.Size() != n {
		t.Fatalf("backup file: %v, size vs %d bytes reported", err, n)
	}

	// The store is still fully usable.
	a, _ := mustCreate(t, s, spec(day, 1))
	if _, err := s.Reserve(bg, a.ID, t0); err != nil {
		t.Fatalf("Reserve after Backup: %v", err)
	}
	live := mustStats(t, s)
	if want := 50 + len(during) + 1; live.Aliases != want {
		t.Errorf("store holds %d aliases, want %d", live.Aliases, want)
	}

	// A plain read-only bbolt open of the copy sees the buckets.
	db, err := bolt.Open(backup, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt cannot open the backup: %v", err)
	}
	var keys int
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketAliases, bucketSweep, bucketMeta} {
			if tx.Bucket(name) == nil {
				return errors.New("bucket " + string(name) + " missing")
			}
		}
		keys = tx.Bucket(bucketAliases).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if keys < 50 || keys > 50+len(during) {
		t.Errorf("backup holds %d aliases, want 50 to %d", keys, 50+len(during))
	}

	// And store.Open serves the aliases from it, tokens included.
	restored, err := Open(backup, Options{})
	if err != nil {
		t.Fatalf("Open(backup): %v", err)
	}
	defer restored.Close()
	for _, c := range before {
		got, err := restored.Authorized(bg, c.a.ID, c.token, t0)
		if err != nil {
			t.Fatalf("backup lacks %s: %v", c.a.ID, err)
		}
		sameAlias(t, got, c.a)
	}
	st := mustStats(t, restored)
	if st.Aliases != keys || st.Issued != uint64(keys) {
		t.Errorf("restored Stats = %+v, want %d aliases and issued", st, keys)
	}
	if _, err := restored.Get(bg, a.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("backup holds an alias created after it: %v", err)
	}
}
