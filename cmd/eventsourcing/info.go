package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	es "github.com/seed06b138f8/eventsourcing"
)

// infoReport is what info tells of a store (its JSON line).
type infoReport struct {
	Application    string           `json:"application"`
	Backend        string           `json:"backend"`
	Database       string           `json:"database"`
	EventsTable    tableInfo        `json:"events_table"`
	SnapshotsTable tableInfo        `json:"snapshots_table"`
	TrackingTable  tableInfo        `json:"tracking_table"`
	KeysTable      tableInfo        `json:"personal_keys_table"`
	Tracking       string           `json:"tracking_layout"` // single-row or multi-row
	PythonCompat   bool             `json:"python_compatible"`
	Notes          []string         `json:"notes,omitempty"`
	Events         int64            `json:"events"`
	Aggregates     int64            `json:"aggregates"`
	MaxID          int64            `json:"max_notification_id"`
	Snapshots      int64            `json:"snapshots"`
	Records        []trackingRecord `json:"tracking"`
	Keys           int64            `json:"personal_keys"`
	ForgottenKeys  int64            `json:"forgotten_keys"`
	States         string           `json:"states"`
	StatesRead     string           `json:"states_read"` // "yes", or why not
}

type tableInfo struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
}

// trackingRecord is one upstream application's position in the tracking
// table.
type trackingRecord struct {
	Upstream string `json:"upstream"`
	Position int64  `json:"position"`
	Rows     int64  `json:"rows"`
	// Lag is how many of this store's events come after Position, when
	// the upstream is this store's own application; else -1.
	Lag int64 `json:"lag"`
}

func runInfo(ctx context.Context, c *cli, args []string) error {
	var f storeFlags
	fs := newFlagSet(c, "info", "--app NAME [flags]")
	f.register(fs)
	if pos, err := parseArgs(fs, args); err != nil {
		return flagError(err)
	} else if len(pos) > 0 {
		return usagef("info takes no arguments (got %q)", pos)
	}
	s, err := openEvents(ctx, c, &f, false)
	if err != nil {
		return err
	}
	defer s.close()
	rep, err := s.info(ctx)
	if err != nil {
		return err
	}
	p := newPrinter(c.stdout, f.json)
	p.record(rep)
	p.line("application        %s", rep.Application)
	p.line("backend            %s, %s", rep.Backend, rep.Database)
	for _, t := range []struct {
		what string
		t    tableInfo
	}{{"events table", rep.EventsTable}, {"snapshots table", rep.SnapshotsTable}, {"tracking table", rep.TrackingTable}} {
		state := "exists"
		if !t.t.Exists {
			state = "missing"
		}
		p.line("%-18s %s (%s)", t.what, t.t.Name, state)
	}
	if rep.KeysTable.Exists {
		p.line("%-18s %s (exists)", "keys table", rep.KeysTable.Name)
	}
	p.line("tracking layout    %s", rep.Tracking)
	compat := "yes"
	if !rep.PythonCompat {
		compat = "no"
	}
	p.line("python-compatible  %s", compat)
	for _, n := range rep.Notes {
		p.line("  note: %s", n)
	}
	p.line("events             %d", rep.Events)
	p.line("aggregates         %d", rep.Aggregates)
	p.line("max notification   %d", rep.MaxID)
	p.line("snapshots          %d", rep.Snapshots)
	if rep.KeysTable.Exists {
		p.line("personal keys      %d (%d forgotten)", rep.Keys, rep.ForgottenKeys)
	}
	if len(rep.Records) == 0 {
		p.line("tracking records   none")
	}
	for i, r := range rep.Records {
		label := ""
		if i == 0 {
			label = "tracking records"
		}
		lag := "lag unknown (another store's log)"
		if r.Lag >= 0 {
			lag = fmt.Sprintf("lag %d events behind this store's log", r.Lag)
		}
		p.line("%-18s %s at %d (%d rows), %s", label, r.Upstream, r.Position, r.Rows, lag)
	}
	p.line("states             %s", rep.States)
	p.line("states read        %s", rep.StatesRead)
	return p.flush()
}

// info gathers the report on the store, whose events table exists.
func (s *store) info(ctx context.Context) (*infoReport, error) {
	rep := &infoReport{
		Application:    s.cfg.Name,
		Backend:        s.module,
		Database:       s.where,
		EventsTable:    tableInfo{s.events.String(), s.eventsExists},
		SnapshotsTable: tableInfo{s.snapshots.String(), s.snapshotsExists},
		TrackingTable:  tableInfo{s.tracking.String(), s.trackingExists},
		KeysTable:      tableInfo{s.keys.String(), s.keysExists},
		Tracking:       "single-row (one row per upstream application, Python 9.5 and later)",
		PythonCompat:   true,
		States:         s.dec.describe(),
	}
	if s.multiRow {
		rep.Tracking = "multi-row (one row per tracked notification, Python before 9.5)"
	}
	if err := s.compatibility(ctx, rep); err != nil {
		return nil, err
	}
	q := "SELECT COUNT(*), COUNT(DISTINCT originator_id), COALESCE(MAX(" + s.d.NotificationIDColumn() + "), 0) FROM " + s.events.Quote(s.d)
	if err := s.db.QueryRowContext(ctx, q).Scan(&rep.Events, &rep.Aggregates, &rep.MaxID); err != nil {
		return nil, fmt.Errorf("count events in %s: %w", s.events, err)
	}
	if s.snapshotsExists {
		if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.snapshots.Quote(s.d)).Scan(&rep.Snapshots); err != nil {
			return nil, fmt.Errorf("count snapshots in %s: %w", s.snapshots, err)
		}
	}
	if s.trackingExists {
		recs, err := s.trackingRecords(ctx)
		if err != nil {
			return nil, err
		}
		rep.Records = recs
	}
	if s.keysExists {
		var err error
		if rep.Keys, rep.ForgottenKeys, err = keyCounts(ctx, s.db, s.d, s.keys); err != nil {
			return nil, err
		}
	}
	rep.StatesRead = "yes (the newest state decrypts, decompresses and parses)"
	if rep.MaxID == 0 {
		rep.StatesRead = "no states yet"
	} else {
		rows, err := tableReader{s.db, s.d}.eventsAfter(ctx, nil, s.events, rep.MaxID-1, 1)
		if err != nil {
			return nil, fmt.Errorf("read notification %d: %w", rep.MaxID, err)
		}
		if len(rows) == 1 {
			if _, err := s.dec.check(rows[0].State.V, false); err != nil {
				rep.StatesRead = fmt.Sprintf("no: notification %d: %v", rep.MaxID, err)
			}
		}
	}
	return rep, nil
}

// compatibility notes what a Python application (or this library,
// configured as the environment says) would make of the tables.
func (s *store) compatibility(ctx context.Context, rep *infoReport) error {
	note := func(compatible bool, format string, args ...any) {
		rep.Notes = append(rep.Notes, fmt.Sprintf(format, args...))
		rep.PythonCompat = rep.PythonCompat && compatible
	}
	if sc, ok := s.d.(es.SchemaChecker); ok {
		for _, o := range sc.EventsTableObjects(s.events, true)[1:] {
			var exists bool
			if err := s.db.QueryRowContext(ctx, o.Exists, o.Args...).Scan(&exists); err != nil {
				return fmt.Errorf("check tables: %w", err)
			}
			if !exists {
				note(false, "missing beside %s: %s (start the application once with CREATE_TABLE on to create it; Python 9.6 needs it to append)", s.events, strings.Join(o.Create[len(o.Create)-1:], "; "))
			}
		}
	}
	if !s.snapshotsExists {
		note(true, "no snapshots table %s: the application has never opened the store with CREATE_TABLE on since it was made", s.snapshots)
	}
	switch {
	case !s.trackingExists:
		note(true, "no tracking table %s", s.tracking)
	case s.multiRow:
		note(true, "multi-row tracking: this library reads it with SINGLE_ROW_TRACKING=false; Python 9.5 and later migrate it to single-row at start (CREATE_TABLE on)")
	default:
		var marks int64
		q := "SELECT COUNT(*) FROM " + s.tracking.Quote(s.d) + " WHERE application_name = " + s.d.Placeholder(1)
		if err := s.db.QueryRowContext(ctx, q, es.MigrationTrackingName).Scan(&marks); err != nil {
			return fmt.Errorf("read %s: %w", s.tracking, err)
		}
		if marks == 0 {
			note(false, "single-row tracking table without the row %q, which Python 9.5 and later write when they create it: start this library's application once with CREATE_TABLE on to add it", es.MigrationTrackingName)
		}
	}
	if s.trackingExists && s.multiRow != s.cfg.MultiRowTracking {
		want := "SINGLE_ROW_TRACKING=false"
		if !s.multiRow {
			want = "SINGLE_ROW_TRACKING=true (or unset)"
		}
		note(true, "the configuration's tracking layout is not the table's: an application configured like this is refused at open; set %s", want)
	}
	return nil
}

// trackingRecords returns each upstream application's position.
func (s *store) trackingRecords(ctx context.Context) ([]trackingRecord, error) {
	q := "SELECT application_name, MAX(notification_id), COUNT(*) FROM " + s.tracking.Quote(s.d) +
		" WHERE application_name <> " + s.d.Placeholder(1) + " GROUP BY application_name ORDER BY application_name"
	rows, err := s.db.QueryContext(ctx, q, es.MigrationTrackingName)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.tracking, err)
	}
	defer rows.Close()
	var recs []trackingRecord
	for rows.Next() {
		var r trackingRecord
		var app sql.NullString
		var pos sql.NullInt64
		if err := rows.Scan(&app, &pos, &r.Rows); err != nil {
			return nil, fmt.Errorf("read %s: %w", s.tracking, err)
		}
		r.Upstream, r.Position, r.Lag = app.String, pos.Int64, -1
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.tracking, err)
	}
	for i := range recs {
		if !strings.EqualFold(recs[i].Upstream, s.cfg.Name) {
			continue
		}
		nid := s.d.NotificationIDColumn()
		q := "SELECT COUNT(*) FROM " + s.events.Quote(s.d) + " WHERE " + nid + " > " + s.d.Placeholder(1)
		if err := s.db.QueryRowContext(ctx, q, recs[i].Position).Scan(&recs[i].Lag); err != nil {
			return nil, fmt.Errorf("count events after %d: %w", recs[i].Position, err)
		}
	}
	return recs, nil
}
