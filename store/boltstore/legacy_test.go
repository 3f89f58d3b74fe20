package boltstore

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// testStore speaks the store's calls as these tests were written: without
// a context, and with uses settled by alias id (the oldest reservation of
// that id not yet settled; none: nothing happens). What is left here is
// the engine's own (file format, indexes, writes saved); the contract's
// guarantees are in store/storetest, written against store.Engine.
type testStore struct {
	*Store
	mu   sync.Mutex
	open map[string][]*store.Reservation
}

var bg = context.Background()

func (s *testStore) Create(spec alias.Spec, now time.Time) (alias.Alias, string, error) {
	c, err := s.Store.Create(bg, spec, now)
	return c.Alias, c.Token, err
}

func (s *testStore) CreateUnverified(spec alias.Spec, now time.Time) (alias.Alias, string, string, error) {
	c, err := s.Store.Create(bg, spec, now, store.Pending())
	return c.Alias, c.Token, c.Confirm, err
}

func (s *testStore) Get(id string, now time.Time) (alias.Alias, error) {
	return s.Store.Get(bg, id, now)
}

func (s *testStore) Held(id string, now time.Time) (alias.Alias, error) {
	return s.Store.Held(bg, id, now)
}

func (s *testStore) Authorized(id, token string, now time.Time) (alias.Alias, error) {
	return s.Store.Authorized(bg, id, token, now)
}

func (s *testStore) Revoke(id, token string, now time.Time) error {
	return s.Store.Revoke(bg, id, token, now)
}

func (s *testStore) RevokeID(id string, now time.Time) error { return s.Store.RevokeID(bg, id, now) }

func (s *testStore) TargetVerified(target string, now time.Time) (bool, error) {
	return s.Store.TargetVerified(bg, target, now)
}

func (s *testStore) Confirm(token string, now time.Time, remember time.Duration) (alias.Alias, error) {
	return s.Store.Confirm(bg, token, now, remember)
}

func (s *testStore) LiveForTarget(target string, now time.Time) (int, error) {
	return s.Store.LiveForTarget(bg, target, now)
}

func (s *testStore) Live(now time.Time, fn func(alias.Alias) bool) error {
	return s.Store.Live(bg, now, fn)
}

func (s *testStore) Sweep(now time.Time, batch int) (int, error) {
	return s.Store.Sweep(bg, now, batch)
}

func (s *testStore) Backup(w io.Writer) (int64, error) { return s.Store.Backup(bg, w) }
func (s *testStore) Stats() (store.Stats, error)       { return s.Store.Stats(bg) }
func (s *testStore) Ping() error                       { return s.Store.Ping(bg) }
func (s *testStore) FlushCounts() error                { return s.flushCounts() }

func (s *testStore) Reserve(id string, now time.Time) (alias.Alias, error) {
	r, err := s.Store.Reserve(bg, id, now)
	if err != nil {
		return alias.Alias{}, err
	}
	s.mu.Lock()
	if s.open == nil {
		s.open = make(map[string][]*store.Reservation)
	}
	s.open[r.Alias.ID] = append(s.open[r.Alias.ID], r)
	s.mu.Unlock()
	return r.Alias, nil
}

func (s *testStore) take(id string) *store.Reservation {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.open[id]
	if len(rs) == 0 {
		return nil
	}
	s.open[id] = rs[1:]
	return rs[0]
}

func (s *testStore) Commit(id string, now time.Time) error {
	r := s.take(id)
	if r == nil {
		return s.Ping() // nothing to settle; a closed store still says so
	}
	return r.Commit(bg, now)
}

func (s *testStore) Refund(id string) error {
	r := s.take(id)
	if r == nil {
		return nil
	}
	return r.Refund(bg, time.Time{})
}

// The errors as these tests name them.
var (
	ErrNotFound   = store.ErrNotFound
	ErrExhausted  = store.ErrExhausted
	ErrTargetFull = store.ErrTargetFull
)

// openTest is Open for these tests.
func openTest(path string, opts Options) (*testStore, error) {
	s, err := Open(path, opts)
	if err != nil {
		return nil, err
	}
	return &testStore{Store: s}, nil
}
