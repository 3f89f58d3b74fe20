package dnsbl

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// entry is a remembered verdict: the listing zone, or listed false.
type entry struct {
	zone   string
	listed bool
}

// cache remembers verdicts per address for a fixed TTL, holding at most
// size of them. Every entry lives equally long, so insertion order is
// expiry order: the oldest entry is both the first to expire and the one
// dropped when the cache is full. A nil *cache remembers nothing.
type cache struct {
	ttl  time.Duration
	size int

	mu    sync.Mutex
	byIP  map[netip.Addr]*list.Element
	order *list.List // of *cached, oldest at the front
}

type cached struct {
	ip      netip.Addr
	e       entry
	expires time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	return &cache{ttl: ttl, size: size, byIP: make(map[netip.Addr]*list.Element), order: list.New()}
}

func (c *cache) get(ip netip.Addr, now time.Time) (entry, bool) {
	if c == nil {
		return entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byIP[ip]
	if !ok {
		return entry{}, false
	}
	v := el.Value.(*cached)
	if !now.Before(v.expires) {
		c.remove(el)
		return entry{}, false
	}
	return v.e, true
}

func (c *cache) put(ip netip.Addr, e entry, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byIP[ip]; ok {
		c.remove(el)
	}
	for c.order.Len() > 0 {
		oldest := c.order.Front()
		if c.order.Len() < c.size && now.Before(oldest.Value.(*cached).expires) {
			break
		}
		c.remove(oldest)
	}
	c.byIP[ip] = c.order.PushBack(&cached{ip: ip, e: e, expires: now.Add(c.ttl)})
}

func (c *cache) remove(el *list.Element) {
	delete(c.byIP, el.Value.(*cached).ip)
	c.order.Remove(el)
}
