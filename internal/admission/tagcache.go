package admission

import (
	"container/list"
	"sync"
	"time"
)

// TagCache remembers which digest a tag pointed at, for a short time: tags move, so an entry
// only saves the registry round trip of admissions close together (a Deployment, then its
// ReplicaSet, then its Pods). It is bounded; the least recently used entry goes first.
type TagCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // front: most recently used
	items map[string]*list.Element
}

type tagEntry struct {
	key     string
	digest  string
	expires time.Time
}

// NewTagCache returns a cache of at most size entries, each valid for ttl. now nil means
// time.Now.
func NewTagCache(ttl time.Duration, size int, now func() time.Time) *TagCache {
	if now == nil {
		now = time.Now
	}
	if size < 1 {
		size = 1
	}
	return &TagCache{ttl: ttl, max: size, now: now, order: list.New(), items: map[string]*list.Element{}}
}

// Observe records that repository:tag points at digest; RegistryScans and earlier lookups
// feed it. repository is canonical (index.docker.io/library/nginx).
func (c *TagCache) Observe(repository, tag, digest string) {
	if c == nil || repository == "" || tag == "" || digest == "" {
		return
	}
	key := repository + ":" + tag
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(c.ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*tagEntry)
		e.digest, e.expires = digest, exp
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&tagEntry{key: key, digest: digest, expires: exp})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*tagEntry).key)
	}
}

// Lookup returns the digest repository:tag pointed at, if observed within the TTL.
func (c *TagCache) Lookup(repository, tag string) (string, bool) {
	if c == nil {
		return "", false
	}
	key := repository + ":" + tag
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return "", false
	}
	e := el.Value.(*tagEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return "", false
	}
	c.order.MoveToFront(el)
	return e.digest, true
}

// Len is the number of entries held, expired or not.
func (c *TagCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
