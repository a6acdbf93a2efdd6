// Wake-ups of a ReplicatedRecorder's subscribers: one primary wake-up
// (one LISTEN connection) shared by all of them, and another once the
// usable standbys have replayed what woke them.

package eventsourcing

import (
	"context"
	"sync"
)

// Wake wakes subscribers as the primary's recorder does (commits in this
// process, and LISTEN on the primary: a standby cannot LISTEN), and once
// more when the usable standbys have replayed the primary's position after
// the wake-up (waiting up to MaxLag), so that a subscriber reading from a
// standby finds what woke it. The first wake-up lets WaitTracking, which
// asks the primary, go on at once. However many subscribers wait at once,
// the recorder holds one LISTEN connection to the primary for them, and
// reads the primary's position once per wake-up.
func (r *ReplicatedRecorder) Wake(ctx context.Context, listen bool, wake func()) {
	if len(r.set.sb) == 0 {
		r.primary.Wake(ctx, listen, wake)
		return
	}
	h := &r.hubs[0]
	if listen {
		h = &r.hubs[1]
	}
	ready := h.join(r, listen)
	defer h.leave()
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	pch, rch := h.primary.wait(), h.replayed.wait()
	wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pch:
			pch = h.primary.wait()
			wake()
		case <-rch:
			rch = h.replayed.wait()
			wake()
		}
	}
}

// wakeHub shares one primary Wake (one LISTEN connection) among a
// recorder's subscribers while any is waiting.
type wakeHub struct {
	mu       sync.Mutex
	n        int
	cancel   context.CancelFunc
	ready    chan struct{}
	done     chan struct{}
	primary  commitSignal // a commit on the primary
	replayed commitSignal // the standbys replayed the position after one
}

func (h *wakeHub) join(r *ReplicatedRecorder, listen bool) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.n == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.ready, h.done = cancel, make(chan struct{}), make(chan struct{})
		go h.run(ctx, r, listen, h.ready, h.done)
	}
	return h.ready
}

func (h *wakeHub) leave() {
	h.mu.Lock()
	h.n--
	if h.n > 0 {
		h.mu.Unlock()
		return
	}
	h.cancel()
	done := h.done
	h.mu.Unlock()
	<-done
}

func (h *wakeHub) run(ctx context.Context, r *ReplicatedRecorder, listen bool, ready, done chan struct{}) {
	defer close(done)
	hint := make(hinter, 1)
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.primary.Wake(ctx, listen, func() {
			once.Do(func() { close(ready) })
			h.primary.broadcast()
			hint.hint()
		})
	}()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hint:
		}
		p, err := r.set.position(ctx)
		if err != nil {
			continue // polling finds what this misses
		}
		for _, sb := range r.set.usable() {
			if _, err := r.set.waitReplayed(ctx, sb, p, r.set.o.MaxLag); err != nil && ctx.Err() != nil {
				return
			}
		}
		h.replayed.broadcast()
	}
}
