package etcdstore

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestFormat runs the record format's tests on one real 3-member cluster.
func TestFormat(t *testing.T) {
	cluster := etcdtest.Start(t)
	t.Run("NewClusterBinary", func(t *testing.T) { testNewClusterBinary(t, cluster) })
	t.Run("Mixed", func(t *testing.T) { testMixedFormats(t, cluster) })
	t.Run("TooNew", func(t *testing.T) { testFormatTooNew(t, cluster) })
	t.Run("Damaged", func(t *testing.T) { testDamagedRecord(t, cluster) })
}

// rawClient is a client of its own for what no host writes.
func rawClient(t *testing.T, cluster *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

// stored is the value of alias id's key as the cluster holds it.
func stored(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.aliasKey(id))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", id, err, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

// A cluster no host ran on starts at the newest format: the marker is
// written and records are binary.
func testNewClusterBinary(t *testing.T, cluster *etcdtest.Cluster) {
	s := open(t, cluster, newPrefix(), Options{})
	ctx := context.Background()
	now := time.Now()
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 3}, now)
	if err != nil {
		t.Fatal(err)
	}
	if v := stored(t, s, c.Alias.ID); storedFormat(v) != formatBinary {
		t.Fatalf("a new cluster's record: %q", v)
	}
	f, err := s.Formats(ctx)
	if err != nil || f != (Formats{Marker: formatBinary, Binary: 1}) {
		t.Fatalf("formats %+v, %v", f, err)
	}
	// A second host finds the marker: no new default over it.
	other := open(t, cluster, s.p, Options{})
	if got := other.format.Load(); got != formatBinary {
		t.Fatalf("the second host writes format %d", got)
	}
}

// On a cluster still at JSON (hosts of the version before the binary
// record were upgraded one by one), every host writes JSON and reads
// both; once the marker is raised, the records are rewritten as binary
// with nothing of them changed, a host that has not noticed yet writes
// JSON still, which the others read, and from its next read on it writes
// binary too.
func testMixedFormats(t *testing.T, cluster *etcdtest.Cluster) {
	p := newPrefix()
	cli := rawClient(t, cluster)
	put(t, cli, p+"meta/format", "1") // as RaiseFormat finds an old cluster: absent or 1
	j, b := open(t, cluster, p, Options{}), open(t, cluster, p, Options{})
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	if j.format.Load() != formatJSON || b.format.Load() != formatJSON {
		t.Fatalf("formats %d and %d on a JSON cluster", j.format.Load(), b.format.Load())
	}

	// Records of every shape, written as JSON: used with an hour window,
	// locked to a sender, pending, revoked, used up with refusals.
	mk := func(sp alias.Spec, opts ...store.CreateOption) store.Created {
		t.Helper()
		sp.Target = "t@example.com"
		sp.Expires = now.Add(48 * time.Hour)
		c, err := j.Create(ctx, sp, now, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	use := func(s *Store, id string, opts ...store.ReserveOption) {
		t.Helper()
		r, err := s.Reserve(ctx, id, now, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	hourly := mk(alias.Spec{MaxUsage: 10})
	use(j, hourly.Alias.ID, store.PerHour(5))
	use(j, hourly.Alias.ID, store.PerHour(5))
	locked := mk(alias.Spec{LockSender: true})
	use(j, locked.Alias.ID, store.From("a@shop.example"))
	allow := mk(alias.Spec{AllowFrom: []string{"x.example", "b@y.example"}})
	pending := mk(alias.Spec{MaxUsage: 2}, store.Pending())
	revoked := mk(alias.Spec{})
	if err := j.Revoke(ctx, revoked.Alias.ID, revoked.Token, now); err != nil {
		t.Fatal(err)
	}
	usedUp := mk(alias.Spec{MaxUsage: 1})
	use(j, usedUp.Alias.ID)
	if _, err := j.Reserve(ctx, usedUp.Alias.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("used up: %v", err)
	}
	if err := j.flushCounts(ctx); err != nil { // the refusal count into the record
		t.Fatal(err)
	}
	ids := []string{hourly.Alias.ID, locked.Alias.ID, allow.Alias.ID, pending.Alias.ID, revoked.Alias.ID, usedUp.Alias.ID}
	before := map[string]*record{}
	for _, id := range ids {
		v := stored(t, j, id)
		if storedFormat(v) != formatJSON {
			t.Fatalf("%s on a JSON cluster: %q", id, v)
		}
		r, err := decode(id, v)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = r
	}
	if r := before[hourly.Alias.ID]; r.HourUsed != 2 || r.HourStart == 0 || len(r.Recent) != 2 {
		t.Fatalf("the hourly alias's record: %+v", r)
	}
	if r := before[locked.Alias.ID]; len(r.AllowFrom) != 1 || r.AllowFrom[0] != "shop.example" {
		t.Fatalf("the locked alias's record: %+v", r)
	}
	if r := before[usedUp.Alias.ID]; r.Refused != 1 {
		t.Fatalf("the used-up alias's record: %+v", r)
	}

	// Raised through b: every record rewritten, none changed.
	f, err := b.RaiseFormat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f != (Formats{Marker: formatBinary, Binary: len(ids), Rewritten: len(ids)}) {
		t.Fatalf("raised: %+v", f)
	}
	for _, id := range ids {
		v := stored(t, b, id)
		if storedFormat(v) != formatBinary {
			t.Fatalf("%s after the raise: %q", id, v)
		}
		r, err := decode(id, v)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r, before[id]) {
			t.Errorf("%s rewritten:\n%+v\nwas\n%+v", id, r, before[id])
		}
	}
	// Repeated: nothing left to do.
	if f, err := b.RaiseFormat(ctx); err != nil || f.Rewritten != 0 || f.JSON != 0 {
		t.Fatalf("raised again: %+v, %v", f, err)
	}

	// j has not read since: its creation is JSON, which b reads, and
	// b's commit writes it again as binary.
	lagging := mk(alias.Spec{MaxUsage: 3})
	if v := stored(t, j, lagging.Alias.ID); storedFormat(v) != formatJSON {
		t.Fatalf("a creation before j's next read: %q", v)
	}
	use(b, lagging.Alias.ID, store.PerHour(5))
	if v := stored(t, b, lagging.Alias.ID); storedFormat(v) != formatBinary {
		t.Fatalf("after b's commit: %q", v)
	}
	// j read the marker with that record: binary from now on, and it
	// reads the records b wrote.
	got, err := j.Authorized(ctx, lagging.Alias.ID, lagging.Token, now)
	if err != nil || got.Used != 1 || got.HourUsed != 1 {
		t.Fatalf("j reads b's binary record: %+v, %v", got, err)
	}
	if j.format.Load() != formatBinary {
		t.Fatalf("j writes format %d after reading the raised marker", j.format.Load())
	}
	use(j, hourly.Alias.ID, store.PerHour(5))
	if a, err := b.Authorized(ctx, hourly.Alias.ID, hourly.Token, now); err != nil || a.Used != 3 || a.HourUsed != 3 {
		t.Fatalf("the hourly alias after a third use: %+v, %v", a, err)
	}
	if _, err := j.Reserve(ctx, hourly.Alias.ID, now, store.PerHour(3)); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("the hour window kept through the rewrite: %v", err)
	}
	if _, err := b.Reserve(ctx, locked.Alias.ID, now, store.From("a@other.example")); !errors.Is(err, store.ErrSenderNotAllowed) {
		t.Fatalf("the lock kept through the rewrite: %v", err)
	}
	if _, err := b.Reserve(ctx, revoked.Alias.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the revocation kept through the rewrite: %v", err)
	}
	if f, err := j.Formats(ctx); err != nil || f.JSON != 0 || f.Binary != len(ids)+1 {
		t.Fatalf("formats at the end: %+v, %v", f, err)
	}
}

// A marker newer than this version knows stops Open with an error naming
// it; so does one that is no format, and RaiseFormat will not lower it.
func testFormatTooNew(t *testing.T, cluster *etcdtest.Cluster) {
	cli := rawClient(t, cluster)
	for _, tc := range []struct{ marker, want string }{
		{"3", "format 3 (/"},
		{"12", "newer than this version knows (2)"},
		{"binary", `is "binary", not a record format`},
		{"0", "not a record format"},
	} {
		p := newPrefix()
		put(t, cli, p+"meta/format", tc.marker)
		s, err := Open(context.Background(), Options{Endpoints: cluster.Endpoints(), Prefix: p})
		if err == nil {
			s.Close()
			t.Errorf("marker %q: opened", tc.marker)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p+"meta/format") {
			t.Errorf("marker %q: %v, want %q and the key", tc.marker, err, tc.want)
		}
	}
	// Raised beyond this version while a host runs: it goes on, writing
	// the newest format it knows, and RaiseFormat refuses.
	p := newPrefix()
	s := open(t, cluster, p, Options{})
	ctx := context.Background()
	now := time.Now()
	put(t, cli, p+"meta/format", "3")
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, c.Alias.ID, now); err != nil {
		t.Fatal(err)
	}
	if s.format.Load() != formatNewest {
		t.Fatalf("writes format %d", s.format.Load())
	}
	if _, err := s.RaiseFormat(ctx); err == nil || !strings.Contains(err.Error(), "format 3, newer") {
		t.Fatalf("RaiseFormat over format 3: %v", err)
	}
}

// A damaged record, or one of a newer format, is an error naming the
// alias on every call that reads it: never ErrNotFound (a 550 for a live
// alias), never a panic. Its neighbours are served.
func testDamagedRecord(t *testing.T, cluster *etcdtest.Cluster) {
	p := newPrefix()
	s := open(t, cluster, p, Options{})
	cli := rawClient(t, cluster)
	ctx := context.Background()
	now := time.Now()
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	good := stored(t, s, c.Alias.ID)
	for name, v := range map[string]string{
		"cut":          string(good[:len(good)-3]),
		"newer format": string(append([]byte{formatNewest + 1}, good[1:]...)),
		"garbage":      "\x01\x02\x03",
		"bad JSON":     `{"id":"x","used":`,
	} {
		id := alias.NewID(8)
		put(t, cli, p+"a/"+id, v)
		for call, err := range map[string]error{
			"get":  func() error { _, err := s.Get(ctx, id, now); return err }(),
			"held": func() error { _, err := s.Held(ctx, id, now); return err }(),
			"reserve": func() error {
				_, err := s.Reserve(ctx, id, now)
				return err
			}(),
			"revoke": s.RevokeID(ctx, id, now),
		} {
			if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), id) {
				t.Errorf("%s record, %s: %v, want an error naming %s", name, call, err, id)
			}
		}
		if name == "newer format" {
			if _, err := s.Get(ctx, id, now); err == nil || !strings.Contains(err.Error(), "newer than this version") {
				t.Errorf("a record of a newer format: %v", err)
			}
		}
	}
	if _, err := s.Get(ctx, c.Alias.ID, now); err != nil {
		t.Fatalf("the good record beside them: %v", err)
	}
	if _, err := s.Formats(ctx); err == nil {
		t.Error("Formats counted a record of no format")
	}
}
