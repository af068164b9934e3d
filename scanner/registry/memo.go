package registry

import (
	"container/list"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Bounds of the memories a Shared keeps for its Clients. Manifests and configs are a few KiB
// each, so the content memo holds thousands of images' worth; anything larger is simply
// fetched again.
const (
	maxMemoEntryBytes = 1 << 20
	maxMemoBytes      = 64 << 20
	maxSeenTags       = 100_000
)

// contentMemo keeps immutable registry content (manifests and configs) in least-recently-used
// order within a byte budget. Keys name the Client and the repository@digest, so an answer
// never vouches for a digest in a repository that was not asked, nor reaches other credentials.
type contentMemo struct {
	mu       sync.Mutex
	maxEntry int
	maxTotal int
	total    int
	order    *list.List // front = most recent; values are *memoEntry
	byKey    map[string]*list.Element
}

type memoEntry struct {
	key  string
	mt   types.MediaType // the media type the registry served it with; "" for blobs
	data []byte
}

func newContentMemo(maxEntry, maxTotal int) *contentMemo {
	return &contentMemo{maxEntry: maxEntry, maxTotal: maxTotal, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the media type and bytes stored under key; callers must not modify the bytes.
func (m *contentMemo) get(key string) (types.MediaType, []byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byKey[key]
	if !ok {
		return "", nil, false
	}
	m.order.MoveToFront(e)
	ent := e.Value.(*memoEntry)
	return ent.mt, ent.data, true
}

// put stores data under key unless it is larger than one entry may be, evicting the least
// recently used entries to stay within the budget.
func (m *contentMemo) put(key string, mt types.MediaType, data []byte) {
	if len(data) > m.maxEntry {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.byKey[key]; ok {
		m.order.MoveToFront(e)
		return
	}
	m.byKey[key] = m.order.PushFront(&memoEntry{key: key, mt: mt, data: data})
	m.total += len(data)
	for m.total > m.maxTotal {
		last := m.order.Back()
		ent := last.Value.(*memoEntry)
		m.order.Remove(last)
		delete(m.byKey, ent.key)
		m.total -= len(ent.data)
	}
}

// seenTags remembers which repository:tag references were resolved before, so a tag seen for
// the first time is fetched with one GET (its manifest is needed anyway) and a known one is
// checked with a HEAD (which registries such as Docker Hub do not count as a pull).
type seenTags struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newSeenTags(maxTags int) *seenTags { return &seenTags{max: maxTags, seen: map[string]struct{}{}} }

func (s *seenTags) has(tag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[tag]
	return ok
}

func (s *seenTags) add(tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) >= s.max {
		clear(s.seen) // a bound, not a policy: forgetting costs one GET instead of a HEAD
	}
	s.seen[tag] = struct{}{}
}
