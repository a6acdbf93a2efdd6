package eventsourcing

// commitSignal: the broadcast that wakes waiters after each commit in this
// process.

import "sync"

// commitSignal wakes goroutines waiting for the next commit in this
// process: a waiter takes the channel returned by wait, and broadcast
// closes it (and starts a new one). The zero value is ready to use.
type commitSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel that is closed at the next broadcast.
func (s *commitSignal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// broadcast wakes every current waiter.
func (s *commitSignal) broadcast() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}
