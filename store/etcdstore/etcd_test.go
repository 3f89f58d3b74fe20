package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var prefixes atomic.Int64

// open returns an engine on cluster under prefix; tests sharing a cluster
// use prefixes of their own so they do not see each other's keys.
func open(t *testing.T, cluster *etcdtest.Cluster, prefix string, opts Options) *Store {
	t.Helper()
	opts.Endpoints = cluster.Endpoints()
	opts.Prefix = prefix
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPrefix() string { return fmt.Sprintf("/t%d/", prefixes.Add(1)) }

// TestEngine runs the engine's own tests on one real 3-member cluster
// (forming one takes seconds).
func TestEngine(t *testing.T) {
	cluster := etcdtest.Start(t)
	t.Run("CrossHost", func(t *testing.T) { testCrossHost(t, cluster) })
	t.Run("DeadHostReservations", func(t *testing.T) { testDeadHostReservations(t, cluster) })
	t.Run("BatchedRace", func(t *testing.T) { testBatchedRace(t, cluster) })
	t.Run("DailyCountsSwept", func(t *testing.T) { testDailyCountsSwept(t, cluster) })
	t.Run("LostCommitRefunded", func(t *testing.T) { testLostCommitRefunded(t, cluster) })
	t.Run("RefundUnanswered", func(t *testing.T) { testRefundUnanswered(t, cluster) })
	// Last: it kills and restarts members.
	t.Run("Outage", func(t *testing.T) { testOutage(t, cluster) })
}

func testCrossHost(t *testing.T, cluster *etcdtest.Cluster) {
	p := newPrefix()
	a, b := open(t, cluster, p, Options{}), open(t, cluster, p, Options{})
	ctx := context.Background()
	now := time.Now()
	c, err := a.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 4}, now)
	if err != nil {
		t.Fatal(err)
	}
	// Visible at once on the other host.
	got, err := b.Authorized(ctx, c.Alias.ID, c.Token, now)
	if err != nil || got.Target != "t@example.com" {
		t.Fatalf("host b: %+v, %v", got, err)
	}
	// 40 sessions over both hosts race for 4 uses.
	var wg sync.WaitGroup
	var won atomic.Int64
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(h *Store) {
			defer wg.Done()
			r, err := h.Reserve(ctx, c.Alias.ID, now)
			// Busy while others hold the last uses; used up (and so
			// not found, like any dead alias) once they committed them.
			if errors.Is(err, store.ErrExhausted) || errors.Is(err, store.ErrNotFound) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if err := r.Commit(ctx, now); err != nil {
				t.Error(err)
				return
			}
			won.Add(1)
		}([]*Store{a, b}[i%2])
	}
	wg.Wait()
	if won.Load() != 4 {
		t.Fatalf("%d deliveries, want 4", won.Load())
	}
	if _, err := a.Reserve(ctx, c.Alias.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("used up alias: %v", err)
	}
	// Revoked on one host, refused on the other at once.
	c2, err := a.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Revoke(ctx, c2.Alias.ID, c2.Token, now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reserve(ctx, c2.Alias.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked alias: %v", err)
	}
}

// A host that dies holding reservations gives them back when its lease
// ends; the uses it had committed stay spent.
func testDeadHostReservations(t *testing.T, cluster *etcdtest.Cluster) {
	p := newPrefix()
	ctx := context.Background()
	now := time.Now()
	live := open(t, cluster, p, Options{})
	c, err := live.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	dying, err := Open(ctx, Options{Endpoints: cluster.Endpoints(), Prefix: p, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := dying.Reserve(ctx, c.Alias.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Commit(ctx, now); err != nil {
		t.Fatal(err)
	}
	if _, err := dying.Reserve(ctx, c.Alias.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Reserve(ctx, c.Alias.ID, now); !errors.Is(err, store.ErrExhausted) {
		t.Fatalf("while the dying host holds the last use: %v", err)
	}
	dying.cli.Close() // the crash: no lease revoked, no settle
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := live.Reserve(ctx, c.Alias.ID, now)
		if err == nil {
			if r.Alias.Used != 1 {
				t.Fatalf("used %d after the crash, want the committed 1", r.Alias.Used)
			}
			break
		}
		if !errors.Is(err, store.ErrExhausted) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead host's reservation never came back")
		}
		time.Sleep(100 * time.Millisecond) // the lease runs out in the cluster's time
	}
}

// Without quorum every call fails with ErrUnavailable within the request
// timeout (never ErrNotFound, never a hang), and the same engine serves
// again once the members are back; losing the leader alone costs a
// short delay, not an error the caller sees.
func testOutage(t *testing.T, cluster *etcdtest.Cluster) {
	p := newPrefix()
	ctx := context.Background()
	now := time.Now()
	s := open(t, cluster, p, Options{RequestTimeout: 3 * time.Second})
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	use := func() error {
		r, err := s.Reserve(ctx, c.Alias.ID, now)
		if err != nil {
			return err
		}
		if err := r.Commit(ctx, now); err != nil {
			r.Refund(ctx, now) // as smtpd does: the message is not finished
			return err
		}
		return nil
	}
	// The leader goes: the next calls wait for the election, then pass.
	lead := cluster.Leader()
	cluster.Kill(lead)
	// A call caught by the loss may time out (ErrUnavailable, never
	// another answer); once a new leader is elected (1-1.5 s, longer on
	// a loaded machine) calls pass again.
	for deadline := time.Now().Add(20 * time.Second); ; {
		err := use()
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after losing the leader: %v", err)
		}
	}
	// A second member goes: no quorum.
	other := (lead + 1) % etcdtest.Size
	cluster.Kill(other)
	calls := map[string]func() error{
		"reserve": use,
		"get":     func() error { _, err := s.Get(ctx, c.Alias.ID, now); return err },
		"create": func() error {
			_, err := s.Create(ctx, alias.Spec{Target: "u@example.com", Expires: now.Add(time.Hour)}, now)
			return err
		},
		"revoke": func() error { return s.Revoke(ctx, c.Alias.ID, "wrong", now) },
		"ping":   func() error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s without quorum: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s without quorum took %s", name, d)
		}
	}
	cluster.Restart(lead)
	cluster.Restart(other)
	cluster.WaitHealthy(etcdtest.Size)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := use()
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after recovery: %v", err)
		}
	}
	// A reservation whose write timed out but took effect is taken back
	// by the engine once the cluster answers again.
	for deadline := time.Now().Add(30 * time.Second); ; {
		a, err := s.Authorized(ctx, c.Alias.ID, c.Token, now)
		if err != nil {
			t.Fatal(err)
		}
		// Two uses went through; a refund that failed in the outage may
		// have kept one more spent (lost, never delivered twice).
		if a.Used < 2 || a.Used > 4 {
			t.Fatalf("after the outage: used %d", a.Used)
		}
		if a.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: %d uses still reserved", a.Pending)
		}
		time.Sleep(100 * time.Millisecond) // the engine's clean-up has no signal
	}
}

// 100 goroutines of one host race for 5 uses, on several aliases at once
// so that writes share batches.
func testBatchedRace(t *testing.T, cluster *etcdtest.Cluster) {
	s := open(t, cluster, newPrefix(), Options{})
	ctx := context.Background()
	now := time.Now()
	const aliases, racers, uses = 4, 100, 5
	ids := make([]string, aliases)
	for i := range ids {
		c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: uses}, now)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.Alias.ID
	}
	var wg sync.WaitGroup
	won := make([]atomic.Int64, aliases)
	for i := 0; i < racers*aliases; i++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			r, err := s.Reserve(ctx, ids[a], now)
			if errors.Is(err, store.ErrExhausted) || errors.Is(err, store.ErrNotFound) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if err := r.Commit(ctx, now); err != nil {
				t.Error(err)
				return
			}
			won[a].Add(1)
		}(i % aliases)
	}
	wg.Wait()
	for a := range won {
		if n := won[a].Load(); n != uses {
			t.Errorf("alias %d: %d deliveries, want %d", a, n, uses)
		}
	}
}

// The daily counts do not grow without bound: a sweep on a later day
// deletes every count of the days before and keeps today's.
func testDailyCountsSwept(t *testing.T, cluster *etcdtest.Cluster) {
	s := open(t, cluster, newPrefix(), Options{})
	ctx := context.Background()
	day1 := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	create := func(target string, now time.Time) {
		t.Helper()
		sp := alias.Spec{Target: target, Expires: now.Add(30 * 24 * time.Hour)}
		if _, err := s.Create(ctx, sp, now, store.Pending(), store.CreationsPerDay(10), store.ConfirmationsPerDay(10)); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() int64 {
		t.Helper()
		resp, err := s.cli.Get(ctx, s.p+"d/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	for i := range 30 {
		create(fmt.Sprintf("t%d@example.com", i), day1)
	}
	day2 := store.NextDay(day1).Add(time.Hour)
	create("t0@example.com", day2)
	if n := counts(); n != 62 {
		t.Fatalf("%d daily counts, want 62", n)
	}
	if _, err := s.Sweep(ctx, day1.Add(11*time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n != 62 {
		t.Fatalf("a sweep on the same day left %d daily counts, want 62", n)
	}
	if _, err := s.Sweep(ctx, day2, 0); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n != 2 {
		t.Fatalf("a sweep on the next day left %d daily counts, want today's 2", n)
	}
}

// lostAnswer settles through the engine, but the answer to every commit
// is lost: the commit takes effect, and its caller is told that the
// cluster did not answer in time.
type lostAnswer struct{ s *Store }

func (l lostAnswer) Commit(ctx context.Context, r *store.Reservation, now time.Time) error {
	if err := l.s.Commit(ctx, r, now); err != nil {
		return err
	}
	return fmt.Errorf("test: the commit's answer was lost: %w", store.ErrUnavailable)
}

func (l lostAnswer) Refund(ctx context.Context, r *store.Reservation, committed bool, at, now time.Time) error {
	return l.s.Refund(ctx, r, committed, at, now)
}

// A commit whose answer was lost, then refunded (as smtpd does after a
// failed commit), is found committed by its key and taken out of the
// hour it was committed in: a message that opened the next window
// meanwhile keeps its count there.
func testLostCommitRefunded(t *testing.T, cluster *etcdtest.Cluster) {
	s := open(t, cluster, newPrefix(), Options{})
	ctx := context.Background()
	t1 := time.Now().Truncate(time.Second)
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: t1.Add(24 * time.Hour)}, t1)
	if err != nil {
		t.Fatal(err)
	}
	id := c.Alias.ID
	res, err := s.Reserve(ctx, id, t1, store.PerHour(5))
	if err != nil {
		t.Fatal(err)
	}
	lost := store.NewReservation(res.Alias, res.Key(), lostAnswer{s}, store.PerHour(5))
	if err := lost.Commit(ctx, t1); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("commit with its answer lost: %v", err)
	}
	t2 := t1.Add(61 * time.Minute) // the first window has ended
	next, err := s.Reserve(ctx, id, t2, store.PerHour(5))
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Commit(ctx, t2); err != nil {
		t.Fatal(err)
	}
	t3 := t2.Add(time.Minute)
	if err := lost.Refund(ctx, t3); err != nil {
		t.Fatal(err)
	}
	a, err := s.Held(ctx, id, t3)
	if err != nil {
		t.Fatal(err)
	}
	if a.Used != 1 || !a.HourStart.Equal(t2) || a.HourUsed != 1 {
		t.Fatalf("used %d, window from %s with %d; want 1, and the window of %s keeping its 1", a.Used, a.HourStart, a.HourUsed, t2)
	}
}

// A refund the cluster did not answer in time (here its caller's context
// was over before it began) goes on in the background: the reservation's
// key is deleted, and the use is not held for as long as the host lives.
func testRefundUnanswered(t *testing.T, cluster *etcdtest.Cluster) {
	s := open(t, cluster, newPrefix(), Options{})
	ctx := context.Background()
	now := time.Now()
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Reserve(ctx, c.Alias.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	key := s.resPrefix(c.Alias.ID) + r.Key()
	got, err := s.cli.Get(ctx, key)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("the reservation's key: %v, %v", got, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	deleted := s.cli.Watch(wctx, key, clientv3.WithRev(got.Header.Revision+1), clientv3.WithFilterPut())
	over, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Refund(over, now); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("refund without time: %v, want ErrUnavailable", err)
	}
	if resp := <-deleted; resp.Err() != nil || len(resp.Events) == 0 {
		t.Fatalf("the reservation's key was not deleted within 30 s: %v", resp.Err())
	}
	if a, err := s.Get(ctx, c.Alias.ID, now); err != nil || a.Pending != 0 {
		t.Fatalf("after the refund: %+v, %v; want the use back", a, err)
	}
}
