package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// badRow is a row verify found wrong (its JSON line).
type badRow struct {
	Table          string `json:"table"`
	NotificationID int64  `json:"notification_id,omitempty"`
	OriginatorID   string `json:"originator_id,omitempty"`
	Version        int64  `json:"originator_version,omitempty"`
	Application    string `json:"application_name,omitempty"`
	KeyID          string `json:"key_id,omitempty"`
	Reason         string `json:"reason"`
}

func (b badRow) String() string {
	var where []string
	if b.NotificationID != 0 {
		where = append(where, fmt.Sprintf("notification %d", b.NotificationID))
	}
	if b.OriginatorID != "" {
		where = append(where, fmt.Sprintf("aggregate %s v%d", b.OriginatorID, b.Version))
	}
	if b.Application != "" {
		where = append(where, fmt.Sprintf("application %q", b.Application))
	}
	if b.KeyID != "" {
		where = append(where, fmt.Sprintf("key %q", b.KeyID))
	}
	if len(where) == 0 {
		return fmt.Sprintf("%s: %s", b.Table, b.Reason)
	}
	return fmt.Sprintf("%s %s: %s", b.Table, strings.Join(where, ", "), b.Reason)
}

// verifySummary is verify's last line.
type verifySummary struct {
	Events     int64 `json:"events"`
	Aggregates int64 `json:"aggregates"`
	Snapshots  int64 `json:"snapshots"`
	Tracking   int64 `json:"tracking_rows"`
	// Keys and ForgottenKeys count the personal data keys table's rows.
	Keys          int64 `json:"personal_keys,omitempty"`
	ForgottenKeys int64 `json:"forgotten_keys,omitempty"`
	Bad           int64 `json:"bad_rows"`
	CustomStates  int64 `json:"states_with_custom_types"`
	OK            bool  `json:"ok"`
}

// verifier checks a store's rows, reporting each bad one as it finds it.
type verifier struct {
	s     *store
	r     tableReader
	p     *printer
	prog  *progress
	sum   verifySummary
	maxID int64
}

func (v *verifier) bad(b badRow) {
	v.sum.Bad++
	v.prog.done()
	v.p.record(b)
	v.p.line("BAD %s", b)
}

func runVerify(ctx context.Context, c *cli, args []string) error {
	var f storeFlags
	fs := newFlagSet(c, "verify", "--app NAME [flags]")
	f.register(fs)
	if pos, err := parseArgs(fs, args); err != nil {
		return flagError(err)
	} else if len(pos) > 0 {
		return usagef("verify takes no arguments (got %q)", pos)
	}
	s, err := openEvents(ctx, c, &f, false)
	if err != nil {
		return err
	}
	defer s.close()
	v := &verifier{s: s, r: tableReader{s.db, s.d}, p: newPrinter(c.stdout, f.json), prog: newProgress(c)}
	defer v.p.flush()
	if err := v.run(ctx); err != nil {
		v.prog.done()
		v.p.flush()
		return err
	}
	v.prog.done()
	v.sum.OK = v.sum.Bad == 0
	v.p.record(v.sum)
	verdict := "OK"
	if !v.sum.OK {
		verdict = fmt.Sprintf("%d BAD ROWS", v.sum.Bad)
	}
	custom := ""
	if v.sum.CustomStates > 0 {
		custom = fmt.Sprintf("; %d states hold values of the application's own transcodings, checked as JSON only", v.sum.CustomStates)
	}
	keys := ""
	if s.keysExists {
		keys = fmt.Sprintf(", %d personal data keys (%d forgotten)", v.sum.Keys, v.sum.ForgottenKeys)
	}
	v.p.line("verify: %s: %d events of %d aggregates, %d snapshots, %d tracking rows%s read%s", verdict, v.sum.Events, v.sum.Aggregates, v.sum.Snapshots, v.sum.Tracking, keys, custom)
	if err := v.p.flush(); err != nil {
		return err
	}
	if !v.sum.OK {
		return errReported
	}
	return nil
}

func (v *verifier) run(ctx context.Context) error {
	s := v.s
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX("+s.d.NotificationIDColumn()+"), 0) FROM "+s.events.Quote(s.d)).Scan(&v.maxID); err != nil {
		return fmt.Errorf("read %s: %w", s.events, err)
	}
	if err := v.tableObjects(ctx); err != nil {
		return err
	}
	if err := s.checkConfiguration(ctx); err != nil {
		return err
	}
	if err := v.eventsByID(ctx); err != nil {
		return err
	}
	if err := v.eventsByAggregate(ctx); err != nil {
		return err
	}
	if s.snapshotsExists {
		if err := v.snapshots(ctx); err != nil {
			return err
		}
	}
	if s.trackingExists {
		if err := v.trackingRows(ctx); err != nil {
			return err
		}
	}
	if s.keysExists {
		if err := v.personalKeys(ctx); err != nil {
			return err
		}
	}
	return nil
}

// tableObjects reports a missing notification ID index (PostgreSQL),
// without which notification IDs may repeat, and any repeated IDs.
func (v *verifier) tableObjects(ctx context.Context) error {
	s := v.s
	sc, ok := s.d.(es.SchemaChecker)
	if !ok || !isPostgres(s.d) {
		return nil
	}
	objs := sc.EventsTableObjects(s.events, true)
	if len(objs) < 2 {
		return nil
	}
	var exists bool
	if err := s.db.QueryRowContext(ctx, objs[1].Exists, objs[1].Args...).Scan(&exists); err != nil {
		return fmt.Errorf("check %s: %w", s.events, err)
	}
	if exists {
		return nil
	}
	v.bad(badRow{Table: s.events.String(), Reason: "the unique index of notification IDs is missing: start the application once with CREATE_TABLE on to create it"})
	q := "SELECT notification_id, COUNT(*) FROM " + s.events.Quote(s.d) + " GROUP BY notification_id HAVING COUNT(*) > 1 ORDER BY notification_id LIMIT 100"
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("check %s: %w", s.events, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		v.bad(badRow{Table: s.events.String(), NotificationID: id, Reason: fmt.Sprintf("notification ID held by %d rows", n)})
	}
	return rows.Err()
}

// eventsByID reads the events table in notification order: IDs, columns
// and states.
func (v *verifier) eventsByID(ctx context.Context) error {
	s := v.s
	table := s.events.String()
	var page []eventRow
	var last int64
	for {
		var err error
		page, err = v.r.eventsAfter(ctx, page, s.events, last, pageSize)
		if err != nil {
			return fmt.Errorf("read %s after notification %d: %w", table, last, err)
		}
		for _, e := range page {
			v.sum.Events++
			b := badRow{Table: table, NotificationID: e.ID, OriginatorID: e.Origin.String, Version: e.Version.Int64}
			if e.ID <= last || e.ID <= 0 {
				v.bad(withReason(b, fmt.Sprintf("notification ID %d does not follow %d", e.ID, last)))
			}
			last = e.ID
			if reason := v.columns(e); reason != "" {
				v.bad(withReason(b, reason))
				continue
			}
			custom, err := s.dec.check(e.State.V, false)
			if err != nil {
				v.bad(withReason(b, "state: "+err.Error()))
			} else if custom {
				v.sum.CustomStates++
			}
		}
		v.prog.show("verify %s: notification %d of %d (%.0f%%)", table, last, v.maxID, percent(last, v.maxID))
		if len(page) < pageSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// withReason returns b with its reason.
func withReason(b badRow, reason string) badRow {
	b.Reason = reason
	return b
}

// columns says what is wrong with an events or snapshots row's columns
// other than its state, or "".
func (v *verifier) columns(e eventRow) string {
	var problems []string
	switch {
	case !e.Origin.Valid:
		problems = append(problems, "originator_id is NULL")
	default:
		if _, err := uuid.Parse(e.Origin.String); err != nil {
			problems = append(problems, fmt.Sprintf("originator_id %q is not a UUID", e.Origin.String))
		}
	}
	switch {
	case !e.Version.Valid:
		problems = append(problems, "originator_version is NULL")
	case e.Version.Int64 < 1:
		problems = append(problems, fmt.Sprintf("originator_version %d is not positive", e.Version.Int64))
	}
	switch {
	case !e.Topic.Valid:
		problems = append(problems, "topic is NULL")
	case e.Topic.String == "":
		problems = append(problems, "topic is empty")
	}
	if !e.State.Valid {
		problems = append(problems, "state is NULL")
	}
	return strings.Join(problems, "; ")
}

// eventsByAggregate reads the events table in (originator ID, version)
// order: each aggregate's versions must run 1, 2, 3, ... as the library's
// aggregates write them, in notification order.
func (v *verifier) eventsByAggregate(ctx context.Context) error {
	s := v.s
	table := s.events.String()
	var page []eventRow
	var after *eventRow
	var origin string
	var version, prevID int64
	read := int64(0)
	for {
		var err error
		page, err = v.r.byOriginAfter(ctx, page, s.events, true, true, after, pageSize)
		if err != nil {
			return fmt.Errorf("read %s by aggregate: %w", table, err)
		}
		for _, e := range page {
			read++
			if e.Origin.String != origin {
				v.sum.Aggregates++
				origin, version, prevID = e.Origin.String, 0, 0
			}
			b := badRow{Table: table, NotificationID: e.ID, OriginatorID: e.Origin.String, Version: e.Version.Int64}
			switch want := version + 1; {
			case !e.Version.Valid:
			case version == 0 && e.Version.Int64 != 1:
				v.bad(withReason(b, fmt.Sprintf("the aggregate's first version is %d, not 1", e.Version.Int64)))
			case version > 0 && e.Version.Int64 != want:
				v.bad(withReason(b, fmt.Sprintf("version %d follows version %d (versions %d to %d are missing)", e.Version.Int64, version, want, e.Version.Int64-1)))
			}
			if prevID != 0 && e.ID < prevID {
				v.bad(withReason(b, fmt.Sprintf("notification ID %d is below the previous version's (%d)", e.ID, prevID)))
			}
			version, prevID = e.Version.Int64, e.ID
		}
		if len(page) > 0 {
			last := page[len(page)-1]
			after = &last
		}
		v.prog.show("verify %s by aggregate: %d of %d rows (%.0f%%)", table, read, v.sum.Events, percent(read, v.sum.Events))
		if len(page) < pageSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// snapshots reads the snapshots table: columns, states in the Python
// snapshot layout, and each snapshot's version among its aggregate's
// events.
func (v *verifier) snapshots(ctx context.Context) error {
	s := v.s
	table := s.snapshots.String()
	var page, found []eventRow
	var after *eventRow
	for {
		var err error
		page, err = v.r.byOriginAfter(ctx, page, s.snapshots, false, false, after, pageSize)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		var keys []eventRow
		for _, e := range page {
			v.sum.Snapshots++
			b := badRow{Table: table, OriginatorID: e.Origin.String, Version: e.Version.Int64}
			if reason := v.columns(e); reason != "" {
				v.bad(withReason(b, reason))
				continue
			}
			keys = append(keys, e)
			if custom, err := s.dec.check(e.State.V, true); err != nil {
				v.bad(withReason(b, "state: "+err.Error()))
			} else if custom {
				v.sum.CustomStates++
			}
		}
		if len(page) > 0 {
			last := page[len(page)-1]
			after = &last
		}
		if found, err = v.r.eventsWithKeys(ctx, found, s.events, true, true, keys); err != nil {
			return fmt.Errorf("look up the snapshots' events in %s: %w", s.events, err)
		}
		have := make(map[eventKey]bool, len(found))
		for _, e := range found {
			have[keyOf(e)] = true
		}
		for _, k := range keys {
			if !have[keyOf(k)] {
				v.bad(badRow{Table: table, OriginatorID: k.Origin.String, Version: k.Version.Int64,
					Reason: fmt.Sprintf("no event of the aggregate at this version in %s: the snapshot is of a state the log does not hold", s.events)})
			}
		}
		v.prog.show("verify %s: %d rows", table, v.sum.Snapshots)
		if len(page) < pageSize {
			return nil
		}
	}
}

// trackingRows reads the tracking table: names and notification IDs.
func (v *verifier) trackingRows(ctx context.Context) error {
	s := v.s
	table := s.tracking.String()
	var page []trackingRow
	var after *trackingRow
	for {
		var err error
		page, err = v.r.trackingAfter(ctx, page, s.tracking, s.multiRow, after, pageSize)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for _, t := range page {
			v.sum.Tracking++
			b := badRow{Table: table, Application: t.App.String}
			switch {
			case !t.App.Valid || t.App.String == "":
				v.bad(withReason(b, "application_name is NULL or empty"))
			case !t.ID.Valid:
				v.bad(withReason(b, "notification_id is NULL"))
			case t.ID.Int64 < 1:
				v.bad(withReason(b, fmt.Sprintf("notification_id %d is not positive", t.ID.Int64)))
			case t.App.String == es.MigrationTrackingName && t.ID.Int64 != 1:
				v.bad(withReason(b, fmt.Sprintf("the migration row's notification_id is %d, not 1", t.ID.Int64)))
			case strings.EqualFold(t.App.String, s.cfg.Name) && t.ID.Int64 > v.maxID:
				v.bad(withReason(b, fmt.Sprintf("notification_id %d is past this store's highest notification ID %d", t.ID.Int64, v.maxID)))
			}
			if t.App.String == es.MigrationTrackingName && s.multiRow {
				v.bad(withReason(b, "a migration row in a multi-row tracking table"))
			}
		}
		if len(page) > 0 {
			last := page[len(page)-1]
			after = &last
		}
		if len(page) < pageSize {
			return nil
		}
	}
}
