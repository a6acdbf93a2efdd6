package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// topicsFlag collects repeated --topic flags.
type topicsFlag []string

func (t *topicsFlag) String() string     { return fmt.Sprint(*t) }
func (t *topicsFlag) Set(s string) error { *t = append(*t, s); return nil }

// logLine is a notification or an aggregate's event, as log and events
// print it (its JSON line).
type logLine struct {
	ID       int64           `json:"id,omitempty"`
	Snapshot bool            `json:"snapshot,omitempty"`
	Origin   uuid.UUID       `json:"originator_id"`
	Version  int64           `json:"originator_version"`
	Topic    string          `json:"topic"`
	State    json.RawMessage `json:"state,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// printEvent prints one event; a state that does not read is printed as
// its error, and reported by the return value.
func printEvent(p *printer, dec *stateDecoder, id int64, snapshot bool, e es.StoredEvent) bool {
	l := logLine{ID: id, Snapshot: snapshot, Origin: e.OriginatorID, Version: e.OriginatorVersion, Topic: e.Topic}
	plain, err := dec.plaintext(e.State)
	if err != nil {
		l.Error = err.Error()
	} else {
		l.State = jsonState(plain)
	}
	p.record(l)
	head := fmt.Sprintf("%d", id)
	switch {
	case snapshot:
		head = "snapshot"
	case id == 0:
		head = "event"
	}
	state := string(plain)
	if err != nil {
		state = "(state does not read: " + err.Error() + ")"
	}
	p.line("%s\t%s\tv%d\t%s\t%s", head, e.OriginatorID, e.OriginatorVersion, e.Topic, state)
	return err == nil
}

func runLog(ctx context.Context, c *cli, args []string) error {
	var f storeFlags
	var topics topicsFlag
	fs := newFlagSet(c, "log", "--app NAME [--after ID] [--limit N] [--topic T]... [--follow] [flags]")
	f.register(fs)
	after := fs.Int64("after", 0, "print notifications after this `ID`")
	limit := fs.Int64("limit", 0, "print at most `N` notifications (0: all)")
	fs.Var(&topics, "topic", "print only notifications of this `topic` (repeatable)")
	follow := fs.Bool("follow", false, "keep printing new notifications until interrupted (Ctrl-C)")
	poll := fs.Duration("poll", 200*time.Millisecond, "with --follow, the longest wait between looks for new notifications (PostgreSQL also wakes on NOTIFY)")
	if pos, err := parseArgs(fs, args); err != nil {
		return flagError(err)
	} else if len(pos) > 0 {
		return usagef("log takes no arguments (got %q): use --after, --limit and --topic", pos)
	}
	if *after < 0 || *limit < 0 {
		return usagef("--after and --limit must not be negative")
	}
	s, err := openEvents(ctx, c, &f, true)
	if err != nil {
		return err
	}
	defer s.close()
	p := newPrinter(c.stdout, f.json)
	defer p.flush()
	bad := 0
	printed := int64(0)
	done := func() bool { return *limit > 0 && printed >= *limit }
	if *follow {
		opts := &es.SubscribeOptions{Topics: topics, PollInterval: *poll}
		for n, err := range es.Subscribe(ctx, s.rec, *after, opts) {
			if err != nil {
				if ctx.Err() != nil {
					break // interrupted: a clean end
				}
				p.flush()
				return fmt.Errorf("follow the log: %w (run 'eventsourcing verify' to find every bad row)", err)
			}
			if !printEvent(p, s.dec, n.ID, false, n.StoredEvent) {
				bad++
			}
			printed++
			if err := p.flush(); err != nil {
				return err
			}
			if done() {
				break
			}
		}
		return p.flush()
	}
	q := &es.NotificationQuery{Topics: topics, ExclusiveStart: true}
	start := *after
	for !done() {
		n := int64(pageSize)
		if *limit > 0 {
			n = min(n, *limit-printed)
		}
		page, err := s.rec.SelectNotifications(ctx, start, int(n), q)
		for _, n := range page {
			if !printEvent(p, s.dec, n.ID, false, n.StoredEvent) {
				bad++
			}
			printed++
			start = n.ID
		}
		if err != nil {
			p.flush()
			return fmt.Errorf("read the log after notification %d: %w (run 'eventsourcing verify' to find every bad row)", start, err)
		}
		if len(page) == 0 {
			break
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("%d states did not read (see each line); run 'eventsourcing verify' for every bad row", bad)
	}
	return nil
}

func runEvents(ctx context.Context, c *cli, args []string) error {
	var f storeFlags
	fs := newFlagSet(c, "events", "AGGREGATE-ID --app NAME [--after V] [--to V] [flags]")
	f.register(fs)
	after := fs.Int64("after", 0, "print the events after version `V`")
	to := fs.Int64("to", 0, "print the events up to and including version `V` (0: the last), and the latest snapshot at or before it")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) != 1 {
		return usagef("events takes one aggregate ID (a UUID), got %d arguments", len(pos))
	}
	id, err := uuid.Parse(pos[0])
	if err != nil {
		return usagef("aggregate ID %q is not a UUID: %v", pos[0], err)
	}
	if *after < 0 || *to < 0 {
		return usagef("--after and --to must not be negative")
	}
	s, err := openEvents(ctx, c, &f, true)
	if err != nil {
		return err
	}
	defer s.close()
	p := newPrinter(c.stdout, f.json)
	defer p.flush()
	bad, printed := 0, 0
	gt := *after
	for {
		page, err := s.rec.SelectEvents(ctx, id, &es.Query{GT: gt, LTE: *to, Limit: pageSize})
		if err != nil {
			p.flush()
			return fmt.Errorf("read aggregate %s after version %d: %w (run 'eventsourcing verify' to find every bad row)", id, gt, err)
		}
		for _, e := range page {
			if !printEvent(p, s.dec, 0, false, e) {
				bad++
			}
			printed++
			gt = e.OriginatorVersion
		}
		if len(page) < pageSize {
			break
		}
	}
	snapshot := false
	if s.snaps != nil {
		snaps, err := s.snaps.SelectEvents(ctx, id, &es.Query{LTE: *to, Desc: true, Limit: 1})
		if err != nil {
			p.flush()
			return fmt.Errorf("read the latest snapshot of aggregate %s: %w", id, err)
		}
		for _, e := range snaps {
			snapshot = true
			if !printEvent(p, s.dec, 0, true, e) {
				bad++
			}
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	switch {
	case printed == 0 && !snapshot && *after == 0 && *to == 0:
		return fmt.Errorf("aggregate %s has no events in %s (table %s)", id, s.where, s.events)
	case bad > 0:
		return errors.New("some states did not read (see each line); run 'eventsourcing verify' for every bad row")
	}
	return nil
}
