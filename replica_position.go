// Positions in the primary's write-ahead log (LSN) and the read-your-writes
// logic built on them: ReadAfter and ReadYourWrites contexts, a
// ReplicatedRecorder's Position, ReadLatest and WaitReplayed, the position
// a read must see, and the position kept after a write.

package eventsourcing

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
)

// LSN is a position in the primary database's write-ahead log: PostgreSQL's
// pg_lsn as a number. Every commit has one, and a standby that has replayed
// up to an LSN shows every transaction committed before it. It is written
// as PostgreSQL writes it, "16/B374D848". Positions of one primary (and its
// standbys) compare; those of different clusters mean nothing to each other.
type LSN uint64

// String returns the LSN as PostgreSQL writes it: two hexadecimal halves.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// ParseLSN parses an LSN written as PostgreSQL writes it ("16/B374D848").
// A malformed one is an error matching ErrProgramming.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: invalid LSN %q (want two hexadecimal halves, like 16/B374D848)", ErrProgramming, s)
	}
	return LSN(h<<32 | l), nil
}

// unknownLSN stands for a write whose position could not be read: reads
// that must follow it go to the primary.
const unknownLSN = LSN(math.MaxUint64)

// Read-your-writes through contexts.
type (
	readAfterKey struct{}
	sessionKey   struct{}
	session      struct{ writes writePosition }
)

// writePosition is the position that reads must see to see the writes made
// before them, of one context session or of a whole recorder
// (ReplicaOptions.ReadYourWrites): the highest position read after a
// write, or unknownLSN while the position after some write could not be
// read and no position read since covers it.
//
// A position read after a write covers every write committed before the
// lookup started. Each lookup takes a ticket before it asks, after its
// write committed: a lookup with a later ticket than one that failed
// started after that failed write had committed, and so its position
// covers it too, and ends the unknown state.
type writePosition struct {
	pos     atomic.Uint64 // the highest position read
	tickets atomic.Uint64 // the last ticket taken
	failed  atomic.Uint64 // the ticket of the latest failed lookup not yet covered; 0: none
}

// ticket is taken by a lookup after its write committed, before it asks.
func (w *writePosition) ticket() uint64 { return w.tickets.Add(1) }

// known records the position read by the lookup with ticket t.
func (w *writePosition) known(t uint64, p LSN) {
	raise(&w.pos, p) // before the unknown state ends
	for {
		f := w.failed.Load()
		if f == 0 || f > t || w.failed.CompareAndSwap(f, 0) {
			return
		}
	}
}

// unknown records that the lookup with ticket t failed.
func (w *writePosition) unknown(t uint64) { raise(&w.failed, LSN(t)) }

// need returns the position reads must see.
func (w *writePosition) need() LSN {
	if w.failed.Load() != 0 {
		return unknownLSN
	}
	return LSN(w.pos.Load())
}

// ReadAfter returns a context whose reads through a [ReplicatedRecorder]
// see at least everything committed at or before pos (a position from
// [ReplicatedRecorder.Position], on this primary): a standby serves them
// once it has replayed pos, waiting up to ReplicaOptions.MaxLag for it,
// and otherwise the primary does. It is the token to pass on when a write
// and the reads that must see it are not in one call chain: a client that
// got it in a response, another process, a message.
func ReadAfter(ctx context.Context, pos LSN) context.Context {
	if prev, ok := ctx.Value(readAfterKey{}).(LSN); ok && prev >= pos {
		return ctx
	}
	return context.WithValue(ctx, readAfterKey{}, pos)
}

// ReadYourWrites returns a context in which reads through a
// [ReplicatedRecorder] see the writes made through it with this context or
// one derived from it, before the read: after each write the recorder
// reads the primary's position (one more query) and keeps it in the
// context; each read then waits for a standby to replay it (see
// [ReadAfter]). Use it for one request or one call chain, such as a
// command that saves an aggregate and then loads it again. If ctx has
// such a session already, it is returned as is.
func ReadYourWrites(ctx context.Context) context.Context {
	if _, ok := ctx.Value(sessionKey{}).(*session); ok {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, &session{})
}

func raise(a *atomic.Uint64, l LSN) {
	for {
		old := a.Load()
		if uint64(l) <= old || a.CompareAndSwap(old, uint64(l)) {
			return
		}
	}
}

// Position returns the primary's current WAL position: a token for
// [ReadAfter] that covers every write acknowledged before the call (with
// synchronous_commit off too: it is the insert position, past commits not
// yet flushed, which a standby replays once they are).
func (r *ReplicatedRecorder) Position(ctx context.Context) (LSN, error) {
	p, err := r.set.position(ctx)
	if err != nil {
		return 0, r.primary.dbError(ctx, "read the primary's WAL position", r.primary.events, err)
	}
	return p, nil
}

// ReadLatest returns a context whose reads see everything committed on the
// primary before the call: [ReadAfter] with the primary's [Position]. Use
// it to read again after a conflict (ErrIntegrity), whose winning write
// a standby may not have replayed yet.
func (r *ReplicatedRecorder) ReadLatest(ctx context.Context) (context.Context, error) {
	p, err := r.Position(ctx)
	if err != nil {
		return ctx, err
	}
	return ReadAfter(ctx, p), nil
}

// WaitReplayed waits until some usable standby has replayed pos, for at
// most MaxLag, and reports whether one has. It is what a read given pos
// does before it reads (see [ReadAfter]); a context that ends is an error.
func (r *ReplicatedRecorder) WaitReplayed(ctx context.Context, pos LSN) (bool, error) {
	sb, err := r.set.ready(ctx, pos)
	return sb != nil, err
}

// required returns the position a read in ctx must see: the greatest of
// ReadAfter's, the context session's and (ReplicaOptions.ReadYourWrites)
// the recorder's.
func (r *ReplicatedRecorder) required(ctx context.Context) LSN {
	var need LSN
	if p, ok := ctx.Value(readAfterKey{}).(LSN); ok {
		need = p
	}
	if s, ok := ctx.Value(sessionKey{}).(*session); ok {
		need = max(need, s.writes.need())
	}
	if r.ryw {
		need = max(need, r.writes.need())
	}
	return need
}

// mayHaveWritten is wrote for a write whose outcome is unknown
// (ErrOutcomeUnknown): its COMMIT may still land, after any position read
// now, so the reads that must see the context's writes go to the primary
// until a later write's position covers it. (A later write of events
// takes the events table lock, which the lost transaction holds until it
// has ended, so the position read after that write covers it.)
func (r *ReplicatedRecorder) mayHaveWritten(ctx context.Context) {
	if s, _ := ctx.Value(sessionKey{}).(*session); s != nil {
		s.writes.unknown(s.writes.ticket())
	}
	if r.ryw {
		r.writes.unknown(r.writes.ticket())
	}
}

// wrote keeps the primary's position after a committed write for the
// reads that must see it (ReadYourWrites), if any. The lookup is bounded by
// ctx and by MaxLag: the write is committed whatever happens now, so a
// position that cannot be read in time is no error, and sends the reads
// that must see the write to the primary until a later lookup covers it.
func (r *ReplicatedRecorder) wrote(ctx context.Context) {
	s, _ := ctx.Value(sessionKey{}).(*session)
	if s == nil && !r.ryw {
		return
	}
	var ts, tr uint64
	if s != nil {
		ts = s.writes.ticket()
	}
	if r.ryw {
		tr = r.writes.ticket()
	}
	ctx, cancel := context.WithTimeout(ctx, r.set.o.MaxLag)
	defer cancel()
	p, err := r.set.position(ctx)
	switch {
	case s != nil && err == nil:
		s.writes.known(ts, p)
	case s != nil:
		s.writes.unknown(ts)
	}
	switch {
	case r.ryw && err == nil:
		r.writes.known(tr, p)
	case r.ryw:
		r.writes.unknown(tr)
	}
}
