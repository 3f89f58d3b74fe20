// Package etcdstore keeps aliases in an etcd v3 cluster shared by any
// number of tempalias hosts, with the guarantees of a single host: ids
// unique across hosts and never reissued, at most max-usage deliveries per
// alias whatever the hosts do, and a creation or revocation seen by every
// host as soon as it returned.
//
// # Keys
//
// Every key lives under Options.Prefix (P):
//
//	P a/<id>                 the alias record (record.go), or a tombstone once swept;
//	                         created once (compare create revision), never deleted
//	P r/<id>/<key>           one reserved use, attached to the reserving host's lease
//	P x/<unix>/<id>          sweep index: due time (expiry, or revocation)
//	P t/<target hash>/<id>   per-target index of aliases that are not used up
//	P c/<confirm hash>       a pending alias's confirmation token -> id
//	P v/<target hash>        a confirmed target -> unix time it stays confirmed
//	P d/<day>/<kind>/<hash>  a target's creations or confirmation mails that day
//	P meta/target_key        the HMAC key of target hashes
//	P meta/link_key          the HMAC key of revoke links
//	P meta/format            the format hosts write records in (format.go)
//	P sweeper/...            the lock one sweeping host holds
//
// # Uses
//
// A reservation is a key of its own under r/, written with the host's
// lease in a transaction that compares the alias record's revision and
// the reservation range's: two hosts racing for the last use are decided
// by the cluster. The record is not written at reserve time. Committing
// deletes the reservation and counts the use in the record, which keeps
// the reservation's key among its latest commits, in one transaction that
// first checks that the reservation still exists; giving a committed use
// back takes the key and the count out again. Because each step names the
// reservation's own key, repeating a step whose answer was lost (a
// timed-out write may still take effect) is harmless: a timed-out
// reservation can only cost a use, never deliver one twice. When a host
// dies its lease ends and its open reservations vanish with it (the uses
// come back); committed uses stay spent.
//
// # Reads
//
// Every read that decides something (a reservation, an authorisation, a
// revocation, the RCPT answer) is linearizable: an alias created through
// one host is accepted at every other host as soon as its 201 went out,
// and a revocation holds everywhere at once. A linearizable read costs the
// leader a round of heartbeats but no disk write. Every call carries its
// own deadline (Options.RequestTimeout), since a linearizable read to a
// cluster without quorum never returns by itself.
package etcdstore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Options configure an engine; zero values get defaults.
type Options struct {
	Endpoints []string // default 127.0.0.1:2379
	Prefix    string   // default "/tempalias/"
	Username  string
	Password  string
	// TLS, when set, is used for every connection to the cluster.
	TLS *tls.Config
	// DialTimeout bounds connecting at Open (default 5s); RequestTimeout
	// bounds every call, retries included (default 5s).
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	// LeaseTTL is how long a dead host's reservations stay held (default
	// 10s): its lease must run out before they come back.
	LeaseTTL time.Duration
	// IDMinLength and GuessProbability as for every engine (defaults 6
	// and one in a million).
	IDMinLength      int
	GuessProbability float64
	// Logger receives the client's own messages and the engine's; nil
	// discards them.
	Logger *slog.Logger
}

// Store is an open etcd engine. Its methods are safe for concurrent use.
type Store struct {
	cli       *clientv3.Client
	opts      Options
	p         string // the key prefix
	targetKey []byte
	linkKey   []byte
	log       *slog.Logger

	format     atomic.Int64 // the records' format hosts write, as last read (format.go)
	tooNewOnce sync.Once

	sessMu sync.Mutex
	sess   *concurrency.Session

	issuedMu   sync.Mutex
	issued     uint64    // ids issued, as last counted plus our own since
	issuedRead time.Time // when issued was last counted in the cluster
	creating   uint64    // creations under way on this host

	refusedMu sync.Mutex
	refused   map[string]int // refusals for used-up aliases, flushed at Sweep

	// reserved holds, per open reservation's key, the record as Reserve
	// read it, so that Commit can try without reading it again.
	reserved sync.Map
	turns    keyed // one reservation or commit at a time per alias, on this host

	closeOnce sync.Once
	reads     chan *read  // to the read batchers (see batch.go)
	writes    chan *write // to the batchers (see batch.go)
	stop      chan struct{}
	batchers  sync.WaitGroup
}

var _ store.Engine = (*Store)(nil)

// Open connects to the cluster and reads (or, the first time, writes) the
// shared target-hash key and the records' format. It fails if the cluster
// does not answer within the dial timeout, or if its records are in a
// format newer than this version knows; later outages are answered with
// store.ErrUnavailable and resolve by themselves.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		opts.Endpoints = []string{"127.0.0.1:2379"}
	}
	if opts.Prefix == "" {
		opts.Prefix = "/tempalias/"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 10 * time.Second
	}
	if opts.IDMinLength <= 0 {
		opts.IDMinLength = 6
	}
	if opts.GuessProbability <= 0 || opts.GuessProbability > 1 {
		opts.GuessProbability = 1e-6
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		Username:    opts.Username,
		Password:    opts.Password,
		Logger:      zapLogger(log),
		// Find out about a dead connection in seconds, not minutes.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		PermitWithoutStream:  true,
	}
	if opts.TLS != nil {
		cfg.TLS = opts.TLS.Clone()
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: connect %v: %w", opts.Endpoints, err)
	}
	s := &Store{cli: cli, opts: opts, p: opts.Prefix, log: log, refused: make(map[string]int),
		reads: make(chan *read), writes: make(chan *write), stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	fresh, err := s.loadTargetKey(ctx)
	if err == nil {
		err = s.loadFormat(ctx, fresh)
	}
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd: open %v: %w", opts.Endpoints, err)
	}
	for range batchers {
		s.batchers.Go(func() { s.batch(s.stop) })
		s.batchers.Go(func() { s.readBatch(s.stop) })
	}
	return s, nil
}

// loadTargetKey reads the cluster's target-hash and revoke-link keys,
// writing new ones if no host did before; two hosts starting at once
// agree on one. fresh says that this host wrote the target-hash key: no
// host ran on the cluster before.
func (s *Store) loadTargetKey(ctx context.Context) (fresh bool, err error) {
	if s.targetKey, fresh, err = s.loadKey(ctx, "meta/target_key"); err != nil {
		return false, err
	}
	s.linkKey, _, err = s.loadKey(ctx, "meta/link_key")
	return fresh, err
}

func (s *Store) loadKey(ctx context.Context, name string) (key []byte, created bool, err error) {
	k := s.p + name
	fresh := make([]byte, 32)
	rand.Read(fresh)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(fresh))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return nil, false, err
	}
	if resp.Succeeded {
		return fresh, true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || len(kvs[0].Value) != 32 {
		return nil, false, fmt.Errorf("%s is not a 32-byte key", k)
	}
	return kvs[0].Value, false, nil
}

// LinkKey is the cluster's key for revoke links, shared by every host.
func (s *Store) LinkKey() []byte { return s.linkKey }

// Close gives up this host's lease (its open reservations come back at
// once instead of after the TTL), writes the refusal counts and
// disconnects.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.close() })
	return err
}

func (s *Store) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	err := s.flushCounts(ctx)
	close(s.stop)
	s.batchers.Wait()
	s.sessMu.Lock()
	if s.sess != nil {
		s.sess.Close()
		s.sess = nil
	}
	s.sessMu.Unlock()
	return errors.Join(err, s.cli.Close())
}

// session returns this host's live lease, making a new one if the last
// ran out (the cluster was unreachable for longer than the TTL).
func (s *Store) session(ctx context.Context) (*concurrency.Session, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.sess != nil {
		select {
		case <-s.sess.Done():
			s.sess = nil
		default:
			return s.sess, nil
		}
	}
	// The lease is granted under the caller's deadline (a grant to a
	// cluster without quorum would wait for ever); its keep-alive runs
	// until Close.
	ttl := max(int64(s.opts.LeaseTTL/time.Second), 1)
	lease, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, unavailable(err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(context.Background()))
	if err != nil {
		return nil, unavailable(err)
	}
	s.sess = sess
	return sess, nil
}

// call bounds one operation, retries included, by the request timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.RequestTimeout)
}

// unavailable marks a client error: the cluster did not answer (or not in
// time), so nothing can be said; the caller turns it into a 4xx or a 503.
func unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}

// errConflict is a compare that failed because another writer came first:
// the operation is tried again on fresh data.
var errConflict = errors.New("conflict")

// retry runs op until it succeeds, fails with something other than a
// conflict, or ctx ends.
//
// A failure to reach the cluster is tried again too, after a pause, while
// ctx has time left: an election ("leader changed", a second or two with
// etcd) then costs a delay instead of a 4xx. Every operation is written so
// that repeating it is safe even if the failed attempt took effect.
func retry(ctx context.Context, op func() error) error {
	pause := 50 * time.Millisecond
	for {
		err := op()
		switch {
		case errors.Is(err, errConflict):
		case errors.Is(err, store.ErrUnavailable):
			select {
			case <-ctx.Done():
				return err
			case <-time.After(pause):
			}
			pause = min(2*pause, 500*time.Millisecond)
		default:
			return err
		}
		if ctx.Err() != nil {
			return unavailable(ctx.Err())
		}
	}
}

func (s *Store) aliasKey(id string) string       { return s.p + "a/" + id }
func (s *Store) resPrefix(id string) string      { return s.p + "r/" + id + "/" }
func (s *Store) confirmKey(hash []byte) string   { return s.p + "c/" + hex.EncodeToString(hash) }
func (s *Store) verifiedKey(hash []byte) string  { return s.p + "v/" + hex.EncodeToString(hash) }
func (s *Store) targetPrefix(hash []byte) string { return s.p + "t/" + hex.EncodeToString(hash) + "/" }
func (s *Store) sweepKey(at int64, id string) string {
	return s.p + "x/" + fmt.Sprintf("%016x", uint64(at)) + "/" + id
}

// targetHash is a keyed hash of a target, so that the cluster's keys list
// no addresses.
func (s *Store) targetHash(target string) []byte {
	m := hmac.New(sha256.New, s.targetKey)
	m.Write([]byte(alias.TargetKey(target)))
	return m.Sum(nil)[:16]
}

// Ping checks that the cluster answers a linearizable read: with no
// quorum it does not, and /healthz fails.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.p+"meta/target_key", clientv3.WithCountOnly()); err != nil {
		return unavailable(err)
	}
	return nil
}

// Stats counts the aliases stored (one sweep entry each) and the ids ever
// issued (one a/ key each, tombstones included).
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	stored, err := s.cli.Get(ctx, s.p+"x/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return store.Stats{}, unavailable(err)
	}
	issued, err := s.cli.Get(ctx, s.p+"a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return store.Stats{}, unavailable(err)
	}
	return store.Stats{Aliases: int(stored.Count), Issued: uint64(issued.Count)}, nil
}

// Backup is not offered by this engine: the cluster is backed up with
// `etcdctl snapshot save`, and aliases move between engines with
// `tempalias export`.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return 0, errors.New("etcd engine: back the cluster up with `etcdctl snapshot save FILE`")
}

// unixKey parses the due time out of a sweep key's time part.
func unixKey(hexTime string) (int64, bool) {
	u, err := strconv.ParseUint(hexTime, 16, 64)
	return int64(u), err == nil
}
