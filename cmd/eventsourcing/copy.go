package main

// This file copies a store to another database: personal data keys (see
// keys.go), events with their notification IDs, snapshots and tracking
// records, byte for byte, in batches, resumably; then compares both
// sides.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// copyFlags are copy's own flags.
type copyFlags struct {
	to       string
	toApp    string
	toSchema string
	batch    int
	maxRate  float64
}

func runCopy(ctx context.Context, c *cli, args []string) error {
	var f storeFlags
	var cf copyFlags
	fs := newFlagSet(c, "copy", "--app NAME --to URL|PATH [--to-app NAME] [--to-schema S] [--batch N] [--max-rate N] [flags]")
	f.register(fs)
	fs.StringVar(&cf.to, "to", "", "the destination: a postgres:// or postgresql:// `URL`, or an SQLite file path")
	fs.StringVar(&cf.toApp, "to-app", "", "the destination's application `NAME` (default: the source's, --app)")
	fs.StringVar(&cf.toSchema, "to-schema", "", "the destination's PostgreSQL `schema` (default: the URL's search path, normally public)")
	fs.IntVar(&cf.batch, "batch", 1000, "rows per transaction")
	fs.Float64Var(&cf.maxRate, "max-rate", 0, "copy at most `N` rows per second, to spare a busy source (0: no limit)")
	if pos, err := parseArgs(fs, args); err != nil {
		return flagError(err)
	} else if len(pos) > 0 {
		return usagef("copy takes no arguments (got %q): give the destination with --to", pos)
	}
	if cf.to == "" {
		return usagef("--to URL|PATH is required: the destination database (a postgres:// URL or an SQLite file)")
	}
	if cf.batch < 1 || cf.batch > 10000 {
		return usagef("--batch %d: want 1 to 10000 rows", cf.batch)
	}
	if cf.maxRate < 0 {
		return usagef("--max-rate must not be negative")
	}
	src, err := openEvents(ctx, c, &f, false)
	if err != nil {
		return err
	}
	defer src.close()
	if cf.toApp == "" {
		cf.toApp = src.cfg.Name
	}
	dst, err := openDestination(ctx, &cf, src.multiRow)
	if err != nil {
		return err
	}
	defer dst.close()
	if err := refuseSameStore(ctx, src, dst); err != nil {
		return err
	}
	cp := &copier{src: src, dst: dst, sr: tableReader{src.db, src.d}, dr: tableReader{dst.db, dst.d},
		batch: cf.batch, maxRate: cf.maxRate, p: newPrinter(c.stdout, f.json), prog: newProgress(c), start: time.Now()}
	defer cp.p.flush()
	if err := cp.run(ctx); err != nil {
		cp.prog.done()
		cp.p.flush()
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted (%v): what was committed stays; run the same command again to resume", err)
		}
		return err
	}
	return cp.p.flush()
}

// openDestination opens (creating if missing) the destination database
// and its tables, as the library creates them, with the source's tracking
// layout.
func openDestination(ctx context.Context, cf *copyFlags, multiRow bool) (*store, error) {
	dst := &store{cfg: &es.Config{Name: cf.toApp}, multiRow: multiRow}
	var err error
	if isPostgresURL(cf.to) {
		dst.module, dst.d = es.ModulePostgres, postgres.Dialect{}
		dst.where = "PostgreSQL " + redactURL(cf.to)
		if cf.toSchema != "" {
			dst.where += ", schema " + cf.toSchema
		}
		if dst.db, err = postgres.Open(ctx, cf.to); err != nil {
			return nil, fmt.Errorf("destination: %w", err)
		}
	} else {
		if cf.toSchema != "" {
			return nil, usagef("--to-schema is for a PostgreSQL destination")
		}
		dst.module, dst.d = es.ModuleSQLite, sqlite.Dialect{}
		dst.where, dst.path = "SQLite file "+cf.to, cf.to
		if dst.db, err = sqlite.Open(ctx, cf.to, 0); err != nil {
			return nil, fmt.Errorf("destination: %w", err)
		}
	}
	opts := &es.SQLOptions{AppName: cf.toApp, Schema: cf.toSchema, MultiRowTracking: multiRow}
	fail := func(err error) (*store, error) {
		dst.db.Close()
		return nil, fmt.Errorf("destination %s: %w", dst.where, err)
	}
	if dst.rec, err = es.NewSQLRecorder(ctx, dst.db, dst.d, opts); err != nil {
		return fail(err)
	}
	if dst.snaps, err = es.NewSQLSnapshotRecorder(ctx, dst.db, dst.d, opts); err != nil {
		return fail(err)
	}
	if err := errors.Join(dst.rec.CreateTables(ctx), dst.snaps.CreateTables(ctx)); err != nil {
		return fail(err)
	}
	dst.events, dst.tracking, dst.snapshots = dst.rec.EventsTable(), dst.rec.TrackingTable(), dst.snaps.Table()
	dst.eventsExists, dst.snapshotsExists, dst.trackingExists = true, true, true
	return dst, nil
}

// redactURL returns a URL without its password.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.LastIndex(s, "@"); at > i {
			if colon := strings.Index(s[i+3:at], ":"); colon >= 0 {
				return s[:i+3+colon] + ":xxxxx" + s[at:]
			}
		}
	}
	return s
}

// refuseSameStore refuses to copy a store onto itself.
func refuseSameStore(ctx context.Context, src, dst *store) error {
	same := false
	switch {
	case src.module != dst.module:
	case src.module == es.ModuleSQLite:
		a, err1 := os.Stat(src.path)
		b, err2 := os.Stat(dst.path)
		same = err1 == nil && err2 == nil && os.SameFile(a, b)
	default:
		q := "SELECT current_database() || ' ' || COALESCE(inet_server_addr()::text, 'socket') || ' ' || COALESCE(inet_server_port(), 0) || ' ' || COALESCE(to_regclass($1)::oid::text, '')"
		var a, b string
		if err := src.db.QueryRowContext(ctx, q, sanitizedTable(src.events)).Scan(&a); err != nil {
			return fmt.Errorf("identify the source: %w", err)
		}
		if err := dst.db.QueryRowContext(ctx, q, sanitizedTable(dst.events)).Scan(&b); err != nil {
			return fmt.Errorf("identify the destination: %w", err)
		}
		same = a == b
	}
	if same {
		return fmt.Errorf("the destination (%s, table %s) is the source itself: give another --to, --to-app or --to-schema", dst.where, dst.events)
	}
	return nil
}

// sanitizedTable returns a PostgreSQL table's name quoted, for to_regclass
// and pg_get_serial_sequence.
func sanitizedTable(t es.Table) string { return t.Quote(postgres.Dialect{}) }

// copier copies one store's tables to another's.
type copier struct {
	src, dst *store
	sr, dr   tableReader
	batch    int
	maxRate  float64
	p        *printer
	prog     *progress
	start    time.Time
	copied   int64 // rows written, for the rate limit
}

// copyResult is a table's line in copy's output.
type copyResult struct {
	Table       string `json:"table"`
	Destination string `json:"destination"`
	Rows        int64  `json:"rows"`
	Copied      int64  `json:"copied"`
	// Forgotten counts the keys the source forgot since an earlier copy,
	// forgotten in the destination now (keys table only).
	Forgotten int64  `json:"forgotten_now,omitempty"`
	Checksum  string `json:"checksum"`
	Verified  bool   `json:"verified"`

	kind tableKind
}

// tableKind says which table a copyResult is of.
type tableKind int

const (
	eventsTable tableKind = iota
	snapshotsTable
	trackingTable
	keysTable
)

// copyProgress is a JSON line written after each batch.
type copyProgress struct {
	Table   string `json:"table"`
	Copied  int64  `json:"copied"`
	Through int64  `json:"through,omitempty"`
}

func (cp *copier) run(ctx context.Context) error {
	// Refuse a destination holding other events or keys before anything
	// is written; then the keys first, so that every event copied finds
	// its keys in the destination, as the library writes them.
	dstMax, err := cp.prepareEvents(ctx)
	if err != nil {
		return err
	}
	kc, err := cp.prepareKeys(ctx)
	if err != nil {
		return err
	}
	var results []copyResult
	if kc != nil {
		results = append(results, copyResult{Table: kc.src.String(), Destination: kc.dst.String(), kind: keysTable})
		if err := cp.copyKeys(ctx, kc, &results[len(results)-1]); err != nil {
			return err
		}
	}
	results = append(results, copyResult{Table: cp.src.events.String(), Destination: cp.dst.events.String(), kind: eventsTable})
	if err := cp.copyEvents(ctx, dstMax, &results[len(results)-1]); err != nil {
		return err
	}
	if cp.src.snapshotsExists {
		results = append(results, copyResult{Table: cp.src.snapshots.String(), Destination: cp.dst.snapshots.String(), kind: snapshotsTable})
		if err := cp.copySnapshots(ctx, &results[len(results)-1]); err != nil {
			return err
		}
	}
	if cp.src.trackingExists {
		results = append(results, copyResult{Table: cp.src.tracking.String(), Destination: cp.dst.tracking.String(), kind: trackingTable})
		if err := cp.copyTracking(ctx, &results[len(results)-1]); err != nil {
			return err
		}
	}
	if isPostgres(cp.dst.d) {
		if err := cp.carrySequence(ctx); err != nil {
			return err
		}
	}
	cp.prog.done()
	// Compare both sides, table by table.
	var differ []string
	for i := range results {
		r := &results[i]
		a, b, err := cp.checksums(ctx, r)
		if err != nil {
			return err
		}
		r.Rows, r.Checksum, r.Verified = a.rows, a.String(), a == b
		cp.prog.done()
		cp.p.record(r)
		verdict := "equal on both sides"
		if !r.Verified {
			verdict = fmt.Sprintf("DIFFERENT: the destination has %d rows, checksum %s", b.rows, b)
			differ = append(differ, r.Destination)
		}
		forgotten := ""
		if r.Forgotten > 0 {
			forgotten = fmt.Sprintf(", %d forgotten now (the source forgot them since the last copy)", r.Forgotten)
		}
		cp.p.line("%s -> %s: %d rows (%d copied now%s), checksum %s, %s", r.Table, r.Destination, r.Rows, r.Copied, forgotten, r.Checksum[:16], verdict)
	}
	if len(differ) > 0 {
		return fmt.Errorf("the copy differs from the source in %s: was either side written during the copy? Stop the application, then run copy again (it refuses a destination holding other data)", strings.Join(differ, ", "))
	}
	cp.p.line("copied %s to %s, verified", cp.src.where, cp.dst.where)
	return nil
}

// pace waits, after n more rows, as long as the rate limit says.
func (cp *copier) pace(ctx context.Context, n int) error {
	cp.copied += int64(n)
	if cp.maxRate <= 0 {
		return ctx.Err()
	}
	due := cp.start.Add(time.Duration(float64(cp.copied) / cp.maxRate * float64(time.Second)))
	t := time.NewTimer(time.Until(due))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// differs is the error for a destination that holds other data.
func (cp *copier) differs(table es.Table, what string) error {
	return fmt.Errorf("the destination's table %s (%s) holds data the source does not: %s; copy into an empty store, or into an earlier copy of this one that was interrupted", table, cp.dst.where, what)
}

// prepareEvents returns the destination's highest notification ID, once
// the destination's rows up to it are found to be the source's.
func (cp *copier) prepareEvents(ctx context.Context) (int64, error) {
	dstT := cp.dst.events
	var dstMax, dstCount int64
	if err := cp.dst.db.QueryRowContext(ctx, "SELECT COALESCE(MAX("+cp.dr.d.NotificationIDColumn()+"), 0), COUNT(*) FROM "+dstT.Quote(cp.dst.d)).Scan(&dstMax, &dstCount); err != nil {
		return 0, fmt.Errorf("read the destination's %s: %w", dstT, err)
	}
	if dstCount > 0 {
		if err := cp.checkEventsPrefix(ctx, dstMax, dstCount); err != nil {
			return 0, err
		}
	}
	return dstMax, nil
}

// copyEvents copies the events table after the destination's highest
// notification ID, dstMax (see prepareEvents).
func (cp *copier) copyEvents(ctx context.Context, dstMax int64, res *copyResult) error {
	srcT, dstT := cp.src.events, cp.dst.events
	var srcMax int64
	if err := cp.src.db.QueryRowContext(ctx, "SELECT COALESCE(MAX("+cp.sr.d.NotificationIDColumn()+"), 0) FROM "+srcT.Quote(cp.src.d)).Scan(&srcMax); err != nil {
		return fmt.Errorf("read %s: %w", srcT, err)
	}
	insert := cp.eventInserter()
	var page []eventRow
	last := dstMax
	for {
		var err error
		if page, err = cp.sr.eventsAfter(ctx, page, srcT, last, cp.batch); err != nil {
			return fmt.Errorf("read %s after notification %d: %w", srcT, last, err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := insert(ctx, page); err != nil {
			return fmt.Errorf("copy notifications %d to %d into %s: %w", page[0].ID, page[len(page)-1].ID, dstT, err)
		}
		last = page[len(page)-1].ID
		res.Copied += int64(len(page))
		cp.p.record(copyProgress{Table: srcT.String(), Copied: res.Copied, Through: last})
		cp.p.flush()
		cp.prog.show("copy %s: notification %d of %d (%.0f%%)", srcT, last, srcMax, percent(last, srcMax))
		if err := cp.pace(ctx, len(page)); err != nil {
			return err
		}
	}
}

// checkEventsPrefix checks that the destination's events, up to its
// highest notification ID, are the source's: as many, and the last batch
// of them equal row by row (the checksums at the end compare them all).
func (cp *copier) checkEventsPrefix(ctx context.Context, dstMax, dstCount int64) error {
	srcT, dstT := cp.src.events, cp.dst.events
	var srcCount int64
	q := "SELECT COUNT(*) FROM " + srcT.Quote(cp.src.d) + " WHERE " + cp.sr.d.NotificationIDColumn() + " <= " + cp.src.d.Placeholder(1)
	if err := cp.src.db.QueryRowContext(ctx, q, dstMax).Scan(&srcCount); err != nil {
		return fmt.Errorf("read %s: %w", srcT, err)
	}
	if srcCount != dstCount {
		return cp.differs(dstT, fmt.Sprintf("%d events up to notification %d, where the source has %d", dstCount, dstMax, srcCount))
	}
	var from int64
	nid := cp.dr.d.NotificationIDColumn()
	q = "SELECT COALESCE(MIN(" + nid + "), 1) - 1 FROM (SELECT " + nid + " FROM " + dstT.Quote(cp.dst.d) + " ORDER BY " + nid + " DESC LIMIT " + fmt.Sprint(cp.batch) + ") last"
	if err := cp.dst.db.QueryRowContext(ctx, q).Scan(&from); err != nil {
		return fmt.Errorf("read the destination's %s: %w", dstT, err)
	}
	a, err := cp.sr.eventsAfter(ctx, nil, srcT, from, cp.batch)
	if err != nil {
		return fmt.Errorf("read %s: %w", srcT, err)
	}
	b, err := cp.dr.eventsAfter(ctx, nil, dstT, from, cp.batch)
	if err != nil {
		return fmt.Errorf("read the destination's %s: %w", dstT, err)
	}
	for i := range b {
		if i >= len(a) || !sameEvent(a[i], b[i]) {
			return cp.differs(dstT, fmt.Sprintf("notification %d is not the source's", b[i].ID))
		}
	}
	return nil
}

// originArg returns the value written for a row's originator ID: the
// stored text itself between SQLite files, else the destination's form of
// the UUID.
func (cp *copier) originArg(e eventRow) (any, error) {
	if !e.Origin.Valid {
		return nil, fmt.Errorf("originator_id is NULL (run 'eventsourcing verify')")
	}
	if cp.src.module == es.ModuleSQLite && cp.dst.module == es.ModuleSQLite {
		return e.Origin.String, nil
	}
	id, err := uuid.Parse(e.Origin.String)
	if err != nil {
		return nil, fmt.Errorf("originator_id %q is not a UUID (run 'eventsourcing verify')", e.Origin.String)
	}
	return cp.dst.d.UUIDArg(id), nil
}

// eventInserter returns a function that writes a batch of events with
// their notification IDs in one transaction: on PostgreSQL under the
// library's append lock, moving the notification ID sequence past them,
// so that the application can write after the copy (and alongside it,
// were it to).
func (cp *copier) eventInserter() func(context.Context, []eventRow) error {
	d, t := cp.dst.d, cp.dst.events
	cols := "(" + d.NotificationIDColumn() + ", originator_id, originator_version, topic, state)"
	return func(ctx context.Context, page []eventRow) error {
		var b strings.Builder
		args := make([]any, 0, 5*len(page))
		for i, e := range page {
			origin, err := cp.originArg(e)
			if err != nil {
				return fmt.Errorf("notification %d: %w", e.ID, err)
			}
			if i > 0 {
				b.WriteString(", ")
			}
			n := 5 * i
			fmt.Fprintf(&b, "(%s, %s, %s, %s, %s)", d.Placeholder(n+1), cp.dr.originParam(n+2), d.Placeholder(n+3), d.Placeholder(n+4), d.Placeholder(n+5))
			args = append(args, e.ID, origin, e.Version, e.Topic, e.State)
		}
		tx, err := cp.dst.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if isPostgres(d) {
			for _, s := range d.LockForAppend(t, 0) {
				if _, err := tx.ExecContext(ctx, s); err != nil {
					return err
				}
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+t.Quote(d)+" "+cols+" VALUES "+b.String(), args...); err != nil {
			return err
		}
		if isPostgres(d) {
			if err := advanceSequence(ctx, tx, t, page[len(page)-1].ID); err != nil {
				return err
			}
		}
		return tx.Commit()
	}
}

// advanceSequence moves a PostgreSQL events table's notification ID
// sequence to at least id, so that the next ID it gives is above it.
func advanceSequence(ctx context.Context, tx *sql.Tx, t es.Table, id int64) error {
	const q = "SELECT setval(s, GREATEST($2::bigint, COALESCE(pg_sequence_last_value(s), 0))) FROM (SELECT pg_get_serial_sequence($1, 'notification_id')::regclass AS s) seq"
	if _, err := tx.ExecContext(ctx, q, sanitizedTable(t), id); err != nil {
		return fmt.Errorf("move the notification ID sequence of %s past %d: %w", t, id, err)
	}
	return nil
}

// carrySequence moves the destination's sequence to the source's, if the
// source is on PostgreSQL and its sequence is further on (a failed insert
// there used an ID): the next ID is the one the source would have given.
func (cp *copier) carrySequence(ctx context.Context) error {
	if !isPostgres(cp.src.d) {
		return nil
	}
	var pos int64
	q := "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence($1, 'notification_id')::regclass), 0)"
	if err := cp.src.db.QueryRowContext(ctx, q, sanitizedTable(cp.src.events)).Scan(&pos); err != nil {
		return fmt.Errorf("read the notification ID sequence of %s: %w", cp.src.events, err)
	}
	if pos == 0 {
		return nil
	}
	tx, err := cp.dst.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := advanceSequence(ctx, tx, cp.dst.events, pos); err != nil {
		return err
	}
	return tx.Commit()
}

// copySnapshots copies the snapshots the destination lacks, page by page,
// refusing one it holds otherwise.
func (cp *copier) copySnapshots(ctx context.Context, res *copyResult) error {
	srcT, dstT := cp.src.snapshots, cp.dst.snapshots
	d := cp.dst.d
	var page, found []eventRow
	var after *eventRow
	for {
		var err error
		if page, err = cp.sr.byOriginAfter(ctx, page, srcT, false, false, after, cp.batch); err != nil {
			return fmt.Errorf("read %s: %w", srcT, err)
		}
		if len(page) == 0 {
			return nil
		}
		last := page[len(page)-1]
		after = &last
		for _, e := range page {
			if _, err := uuid.Parse(e.Origin.String); err != nil {
				return fmt.Errorf("%s: snapshot of %q v%d: originator_id is not a UUID (run 'eventsourcing verify')", srcT, e.Origin.String, e.Version.Int64)
			}
		}
		if found, err = cp.dr.eventsWithKeys(ctx, found, dstT, false, false, page); err != nil {
			return fmt.Errorf("read the destination's %s: %w", dstT, err)
		}
		have := make(map[eventKey]eventRow, len(found))
		for _, e := range found {
			have[keyOf(e)] = e
		}
		var b strings.Builder
		var args []any
		n := 0
		for _, e := range page {
			if old, ok := have[keyOf(e)]; ok {
				if !sameEvent(old, e) {
					return cp.differs(dstT, fmt.Sprintf("the snapshot of aggregate %s at version %d is another", e.Origin.String, e.Version.Int64))
				}
				continue
			}
			origin, err := cp.originArg(e)
			if err != nil {
				return err
			}
			if n > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%s, %s, %s, %s)", cp.dr.originParam(4*n+1), d.Placeholder(4*n+2), d.Placeholder(4*n+3), d.Placeholder(4*n+4))
			args = append(args, origin, e.Version, e.Topic, e.State)
			n++
		}
		if n > 0 {
			q := "INSERT INTO " + dstT.Quote(d) + " (originator_id, originator_version, topic, state) VALUES " + b.String()
			if _, err := cp.dst.db.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("copy snapshots into %s: %w", dstT, err)
			}
			res.Copied += int64(n)
		}
		cp.p.record(copyProgress{Table: srcT.String(), Copied: res.Copied})
		cp.p.flush()
		cp.prog.show("copy %s: %d rows", srcT, res.Copied)
		if err := cp.pace(ctx, n); err != nil {
			return err
		}
	}
}

// copyTracking copies the tracking records the destination lacks, page
// by page, refusing one it holds otherwise. The migration row of a
// single-row table is the destination's own (CreateTables writes it).
func (cp *copier) copyTracking(ctx context.Context, res *copyResult) error {
	srcT, dstT := cp.src.tracking, cp.dst.tracking
	d := cp.dst.d
	multi := cp.src.multiRow
	var page, found []trackingRow
	var after *trackingRow
	for {
		var err error
		if page, err = cp.sr.trackingAfter(ctx, page, srcT, multi, after, cp.batch); err != nil {
			return fmt.Errorf("read %s: %w", srcT, err)
		}
		if len(page) == 0 {
			return nil
		}
		last := page[len(page)-1]
		after = &last
		rows := page[:0:0]
		for _, t := range page {
			if !t.App.Valid || t.App.String == "" || !t.ID.Valid {
				return fmt.Errorf("%s: a row without an application name or notification ID (run 'eventsourcing verify')", srcT)
			}
			if t.App.String != es.MigrationTrackingName {
				rows = append(rows, t)
			}
		}
		if found, err = cp.dr.trackingWithKeys(ctx, found, dstT, multi, rows); err != nil {
			return fmt.Errorf("read the destination's %s: %w", dstT, err)
		}
		have := make(map[trackingRow]bool, len(found))
		for _, t := range found {
			have[trackingRow{App: t.App}] = true
			have[t] = true
		}
		var b strings.Builder
		var args []any
		n := 0
		for _, t := range rows {
			switch {
			case have[t]:
				continue
			case !multi && have[trackingRow{App: t.App}]:
				return cp.differs(dstT, fmt.Sprintf("the tracking record of %q is not at %d", t.App.String, t.ID.Int64))
			}
			if n > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%s, %s)", d.Placeholder(2*n+1), d.Placeholder(2*n+2))
			args = append(args, t.App, t.ID)
			n++
		}
		if n > 0 {
			q := "INSERT INTO " + dstT.Quote(d) + " (application_name, notification_id) VALUES " + b.String()
			if _, err := cp.dst.db.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("copy tracking records into %s: %w", dstT, err)
			}
			res.Copied += int64(n)
		}
		cp.p.record(copyProgress{Table: srcT.String(), Copied: res.Copied})
		cp.p.flush()
		if err := cp.pace(ctx, n); err != nil {
			return err
		}
	}
}

// checksums returns the checksums of a result's table on both sides.
func (cp *copier) checksums(ctx context.Context, res *copyResult) (src, dst checksum, err error) {
	sides := []struct {
		s   *store
		r   tableReader
		sum *checksum
	}{{cp.src, cp.sr, &src}, {cp.dst, cp.dr, &dst}}
	for _, side := range sides {
		switch res.kind {
		case eventsTable:
			err = sumEvents(ctx, side.r, side.s.events, side.sum, cp.prog)
		case snapshotsTable:
			err = sumSnapshots(ctx, side.r, side.s.snapshots, side.sum)
		case trackingTable:
			err = sumTracking(ctx, side.r, side.s.tracking, cp.src.multiRow, side.sum)
		case keysTable:
			err = sumKeys(ctx, side.r, side.s.keys, side.sum)
		}
		if err != nil {
			return src, dst, fmt.Errorf("verify the copy (%s): %w", side.s.where, err)
		}
	}
	return src, dst, nil
}

func sumEvents(ctx context.Context, r tableReader, t es.Table, sum *checksum, prog *progress) error {
	var page []eventRow
	var last int64
	for {
		var err error
		if page, err = r.eventsAfter(ctx, page, t, last, pageSize); err != nil {
			return err
		}
		for _, e := range page {
			sum.addEvent(e)
			last = e.ID
		}
		prog.show("verify %s: %d rows", t, sum.rows)
		if len(page) < pageSize {
			return nil
		}
	}
}

func sumSnapshots(ctx context.Context, r tableReader, t es.Table, sum *checksum) error {
	var page []eventRow
	var after *eventRow
	for {
		var err error
		if page, err = r.byOriginAfter(ctx, page, t, false, false, after, pageSize); err != nil {
			return err
		}
		for _, e := range page {
			sum.addEvent(e)
		}
		if len(page) < pageSize {
			return nil
		}
		last := page[len(page)-1]
		after = &last
	}
}

// sumTracking sums a tracking table without its migration row.
func sumTracking(ctx context.Context, r tableReader, t es.Table, multiRow bool, sum *checksum) error {
	var page []trackingRow
	var after *trackingRow
	for {
		var err error
		if page, err = r.trackingAfter(ctx, page, t, multiRow, after, pageSize); err != nil {
			return err
		}
		for _, tr := range page {
			if tr.App.String != es.MigrationTrackingName {
				sum.addTracking(tr)
			}
		}
		if len(page) < pageSize {
			return nil
		}
		last := page[len(page)-1]
		after = &last
	}
}
