package admission

import (
	"context"
	"sync"
	"sync/atomic"
)

// Assessor takes an image admission found no verdict for, so that a retry finds one. It must
// not block: admission calls it inline, under the webhook's timeout.
type Assessor interface {
	Assess(ctx context.Context, namespace, repository, digest, tag string, pullSecrets []string)
}

// Assessment is one image handed to an Assessor.
type Assessment struct {
	Namespace, Repository, Digest, Tag string
	PullSecrets                        []string
}

// Queue is an Assessor that hands images to a consumer (the Engine) through a bounded channel,
// dropping an image already waiting and dropping, with a count, when the consumer falls behind:
// admission never waits for it.
type Queue struct {
	ch      chan Assessment
	mu      sync.Mutex
	pending map[string]bool
	dropped atomic.Int64
}

// NewQueue returns a queue holding up to size images.
func NewQueue(size int) *Queue {
	if size < 1 {
		size = 1
	}
	return &Queue{ch: make(chan Assessment, size), pending: map[string]bool{}}
}

// Assess implements Assessor.
func (q *Queue) Assess(_ context.Context, namespace, repository, digest, tag string, pullSecrets []string) {
	key := repository + "@" + digest
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending[key] {
		return
	}
	a := Assessment{Namespace: namespace, Repository: repository, Digest: digest, Tag: tag, PullSecrets: append([]string(nil), pullSecrets...)}
	select {
	case q.ch <- a:
		q.pending[key] = true
	default:
		q.dropped.Add(1)
	}
}

// C delivers queued images; call Done for each once it is taken care of, so the same image can
// be queued again.
func (q *Queue) C() <-chan Assessment { return q.ch }

// Done forgets an image taken from C.
func (q *Queue) Done(a Assessment) {
	q.mu.Lock()
	delete(q.pending, a.Repository+"@"+a.Digest)
	q.mu.Unlock()
}

// Dropped counts images not queued because the queue was full.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }
