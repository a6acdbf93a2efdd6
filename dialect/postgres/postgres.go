// Package postgres is the PostgreSQL dialect of the eventsourcing SQL
// recorder, on github.com/jackc/pgx/v5/stdlib. Importing it registers the
// dialect for the persistence module "postgres" (and
// "eventsourcing.postgres"):
//
//	import _ "github.com/seed06b138f8/eventsourcing/dialect/postgres"
//
// Tables are the Python library's (9.6): <app>_events (bigserial
// notification_id with a unique index), <app>_snapshots and <app>_tracking,
// originator IDs as uuid, with Python 9.6's storage options; beside them, in
// their schema, the composite type stored_event_uuid that Python 9.6
// inserts through. Every insert transaction takes the lock the Python
// library takes, LOCK TABLE <events> IN EXCLUSIVE MODE (readers are not
// blocked), so notification IDs commit in order and Go and Python writers
// can share a table.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	es "github.com/seed06b138f8/eventsourcing"
)

func init() {
	es.RegisterDialect(es.ModulePostgres, func(ctx context.Context, cfg *es.Config) (*sql.DB, es.Dialect, error) {
		db, err := OpenConfig(ctx, &cfg.Postgres)
		return db, Dialect{}, err
	})
}

// Open opens a database from a pgx connection string (a URL or key=value
// DSN) and checks it is reachable.
func Open(ctx context.Context, dsn string) (*sql.DB, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres connection string: %v", es.ErrProgramming, err)
	}
	return open(ctx, cc)
}

func open(ctx context.Context, cc *pgx.ConnConfig, opts ...stdlib.OptionOpenDB) (*sql.DB, error) {
	db := stdlib.OpenDB(*cc, opts...)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, &es.DatabaseError{Kind: es.ErrOperational, Op: fmt.Sprintf("connect to postgres %s:%d/%s", cc.Host, cc.Port, cc.Database), Err: err}
	}
	return db, nil
}

// OpenConfig opens a database from configuration values (the POSTGRES_*
// variables), mapping the pool settings onto database/sql: at most
// PoolSize+MaxOverflow open connections, PoolSize idle, ConnMaxAge as the
// connection lifetime; PrePing pinging every pooled connection before
// reuse (without it, pgx pings those idle for over a second); and setting
// idle_in_transaction_session_timeout. TLS is SSLMode and SSLRootCert;
// where they are empty, libpq's environment variables (PGSSLMODE,
// PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) apply, and without those sslmode is
// prefer, as for the Python library.
func OpenConfig(ctx context.Context, c *es.PostgresConfig) (*sql.DB, error) {
	port := c.Port
	if port == 0 {
		port = 5432
	}
	connectTO := c.ConnectTimeout
	if connectTO == 0 {
		connectTO = 5 * time.Second
	}
	kv := func(k, v string) string {
		return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	params := []string{
		kv("host", c.Host), kv("port", strconv.Itoa(port)), kv("dbname", c.DBName),
		kv("user", c.User), kv("password", c.Password),
		kv("connect_timeout", strconv.Itoa(max(1, int(connectTO.Seconds())))),
	}
	// Unset, libpq's PGSSLMODE and PGSSLROOTCERT apply (sslmode prefer
	// without them), as they do for the Python library.
	if c.SSLMode != "" {
		params = append(params, kv("sslmode", c.SSLMode))
	}
	if c.SSLRootCert != "" {
		params = append(params, kv("sslrootcert", c.SSLRootCert))
	}
	dsn := strings.Join(params, " ")
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres configuration: %v", es.ErrProgramming, err)
	}
	idle := c.IdleInTransactionSessionTimeout
	switch {
	case idle == 0:
		idle = 5 * time.Second
	case idle < 0:
		idle = 0
	}
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(ceilMillis(idle), 10)
	var opts []stdlib.OptionOpenDB
	if c.PrePing {
		// Check every connection before reuse; without PrePing, pgx checks
		// those idle for over a second.
		opts = append(opts, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return true }))
	}
	db, err := open(ctx, cc, opts...)
	if err != nil {
		return nil, err
	}
	pool := c.PoolSize
	if pool == 0 {
		pool = 5
	}
	overflow := c.MaxOverflow
	switch {
	case overflow == 0:
		overflow = 10
	case overflow < 0:
		overflow = 0
	}
	db.SetMaxIdleConns(pool)
	db.SetMaxOpenConns(pool + overflow)
	db.SetConnMaxLifetime(c.ConnMaxAge)
	return db, nil
}

// Dialect is the PostgreSQL dialect.
type Dialect struct{}

var (
	_ es.Dialect             = Dialect{}
	_ es.Notifier            = Dialect{}
	_ es.SchemaChecker       = Dialect{}
	_ es.OriginatorIDChecker = Dialect{}
)

// Traits returns PostgreSQL's: many writers; pgx runs statements without
// arguments with the simple protocol, which takes several joined with "; "
// in one round trip; the extended query protocol binds at most 65535
// parameters in one statement.
func (Dialect) Traits() es.Traits {
	return es.Traits{BatchStatements: true, MaxBindParameters: 65535}
}

// ceilMillis returns d in whole milliseconds, rounding up: PostgreSQL
// reads a timeout of 0 as "no limit", so 0.5 ms must become 1 ms, not 0.
func ceilMillis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if time.Duration(ms)*time.Millisecond < d {
		ms++
	}
	return ms
}

// ddlLock serialises table creation between sessions: concurrent CREATE
// TABLE IF NOT EXISTS statements collide in the catalog otherwise. It is a
// transaction-scoped advisory lock, released at commit.
const ddlLock = "SELECT pg_advisory_xact_lock(hashtext('eventsourcing: create tables'))"

// Name returns "postgres".
func (Dialect) Name() string { return es.ModulePostgres }

// DefaultTables returns the Python library's tables for an application:
// <app>_events, <app>_snapshots and <app>_tracking, lower-cased.
func (Dialect) DefaultTables(app string) (string, string, string) {
	p := strings.ToLower(app)
	if p == "" {
		return "events", "snapshots", "tracking"
	}
	return p + "_events", p + "_snapshots", p + "_tracking"
}

// MaxIdentifierLength returns 63, PostgreSQL's NAMEDATALEN-1.
func (Dialect) MaxIdentifierLength() int { return 63 }

// QuoteIdentifier double-quotes a name.
func (Dialect) QuoteIdentifier(name string) string { return pgx.Identifier{name}.Sanitize() }

// Placeholder returns $i.
func (Dialect) Placeholder(i int) string { return "$" + strconv.Itoa(i) }

// UUIDArg returns the ID's text form for a uuid column.
func (Dialect) UUIDArg(id uuid.UUID) any { return id.String() }

// NotificationIDColumn returns "notification_id".
func (Dialect) NotificationIDColumn() string { return "notification_id" }

// storageOptions are the table storage options of Python 9.6, on all
// three tables: autovacuum on, vacuuming for dead rows rarely (the tables
// are appended to), analysing often (the planner sees the tables grow).
// Python 9.3 turned autovacuum off, which also stops the analyses and the
// vacuums after inserts that keep index-only scans cheap.
const storageOptions = " WITH (autovacuum_enabled=true, autovacuum_vacuum_threshold=100000000," +
	" autovacuum_vacuum_scale_factor=0.5, autovacuum_analyze_threshold=1000, autovacuum_analyze_scale_factor=0.01)"

// storedEventType is the composite type Python 9.6 inserts events through
// (INSERT ... SELECT * FROM unnest($1::<schema>.stored_event_uuid[])), in
// the schema of the tables, with its columns.
const (
	storedEventType        = "stored_event_uuid"
	storedEventTypeColumns = "originator_id uuid, originator_version bigint, topic text, state bytea"
)

// sanitized returns a table's name quoted for a regclass or regtype text.
func sanitized(t es.Table) string {
	if t.Schema == "" {
		return pgx.Identifier{t.Name}.Sanitize()
	}
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// createSchema returns the statements that begin every CREATE: the DDL
// lock, and the schema if the table has one.
func (d Dialect) createSchema(t es.Table) []string {
	stmts := []string{ddlLock}
	if t.Schema != "" {
		stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+d.QuoteIdentifier(t.Schema))
	}
	return stmts
}

// createType returns the statement that creates the composite type of
// Python 9.6 in the table's schema unless it exists. PostgreSQL has no
// CREATE TYPE IF NOT EXISTS, and a Python process (which does not take the
// DDL lock) may be creating the type at the same time: its commit makes
// ours fail with duplicate_object, or unique_violation if we waited for it.
// Both mean the type is there.
func (d Dialect) createType(t es.Table) string {
	name := es.Table{Schema: t.Schema, Name: storedEventType}.Quote(d)
	return "DO $$ BEGIN CREATE TYPE " + name + " AS (" + storedEventTypeColumns + ");" +
		" EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
}

// CreateEventsTable returns the Python library's (9.6) DDL: the table, with
// Python 9.6's storage options, the unique index of notification IDs for
// an events table, and the composite type stored_event_uuid that a Python
// 9.6 writer needs in the table's schema (and the schema, if the table has
// one). It does not create Python's function es_insert_events_uuid: its
// body takes no table lock, so writers using it can make readers skip.
func (d Dialect) CreateEventsTable(t es.Table, notifications bool) []string {
	var stmts []string
	for _, o := range d.EventsTableObjects(t, notifications) {
		for _, s := range o.Create {
			if !slices.Contains(stmts, s) {
				stmts = append(stmts, s)
			}
		}
	}
	return stmts
}

// EventsTableObjects returns what CreateEventsTable makes, each found by
// name: the table, its notification ID index (of an events table) and the
// composite type in its schema.
func (d Dialect) EventsTableObjects(t es.Table, notifications bool) []es.SchemaObject {
	table := "CREATE TABLE IF NOT EXISTS " + t.Quote(d) +
		" (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea," +
		" PRIMARY KEY (originator_id, originator_version))" + storageOptions
	if notifications {
		table = "CREATE TABLE IF NOT EXISTS " + t.Quote(d) +
			" (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea," +
			" notification_id bigserial, PRIMARY KEY (originator_id, originator_version))" + storageOptions
	}
	objs := []es.SchemaObject{{
		Exists: "SELECT to_regclass($1) IS NOT NULL", Args: []any{sanitized(t)},
		Create: append(d.createSchema(t), table),
	}}
	if notifications {
		index := t.Name + "_notification_id_idx"
		objs = append(objs, es.SchemaObject{
			Exists: "SELECT to_regclass($1) IS NOT NULL", Args: []any{sanitized(es.Table{Schema: t.Schema, Name: index})},
			Create: append(d.createSchema(t), "CREATE UNIQUE INDEX IF NOT EXISTS "+d.QuoteIdentifier(index)+" ON "+t.Quote(d)+" (notification_id ASC)"),
		})
	}
	return append(objs, es.SchemaObject{
		Exists: "SELECT to_regtype($1) IS NOT NULL", Args: []any{sanitized(es.Table{Schema: t.Schema, Name: storedEventType})},
		Create: append(d.createSchema(t), d.createType(t)),
	})
}

// OriginatorIDTypeQuery returns the type of the table's originator_id
// column unless it is uuid.
func (Dialect) OriginatorIDTypeQuery(t es.Table) (string, []any) {
	return "SELECT COALESCE((SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a" +
		" WHERE a.attrelid = to_regclass($1) AND a.attname = 'originator_id' AND NOT a.attisdropped" +
		" AND a.atttypid <> 'uuid'::regtype), '')", []any{sanitized(t)}
}

// CreateTrackingTable returns the Python library's (9.6) DDL: primary key
// application_name with a nullable notification_id (single row), or
// (application_name, notification_id); with Python 9.6's storage options.
func (d Dialect) CreateTrackingTable(t es.Table, singleRow bool) []string {
	cols := "application_name text NOT NULL, notification_id bigint NOT NULL, PRIMARY KEY (application_name, notification_id)"
	if singleRow {
		cols = "application_name text NOT NULL, notification_id bigint, PRIMARY KEY (application_name)"
	}
	return append(d.createSchema(t), "CREATE TABLE IF NOT EXISTS "+t.Quote(d)+" ("+cols+")"+storageOptions)
}

// TrackingKeyColumnsQuery counts the table's primary key columns.
func (Dialect) TrackingKeyColumnsQuery(t es.Table) (string, []any) {
	return "SELECT COALESCE((SELECT array_length(i.indkey::int2[], 1) FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisprimary), 0)", []any{sanitized(t)}
}

// LockForAppend returns SET LOCAL lock_timeout and LOCK TABLE ... IN
// EXCLUSIVE MODE, as the Python library runs them.
func (d Dialect) LockForAppend(events es.Table, timeout time.Duration) []string {
	return []string{
		"SET LOCAL lock_timeout = '" + strconv.FormatInt(ceilMillis(timeout), 10) + "ms'",
		"LOCK TABLE " + events.Quote(d) + " IN EXCLUSIVE MODE",
	}
}

// Channel returns the LISTEN/NOTIFY channel of an events table, as the
// Python library (9.5) names it: the table's name with "." replaced by "_"
// (its channel_name). Python 9.5 keeps the schema apart from the table name
// (POSTGRES_SCHEMA), so the schema is not part of the channel: tables of
// the same name in two schemas share a channel, which costs their
// subscribers a spurious wake-up, never an event.
func Channel(events es.Table) string { return strings.ReplaceAll(events.Name, ".", "_") }

// NotifyStatement returns NOTIFY on the events table's channel, with no
// payload, as the Python library (9.5) sends it.
func (d Dialect) NotifyStatement(events es.Table) string {
	return "NOTIFY " + d.QuoteIdentifier(Channel(events))
}

// Classify maps PostgreSQL SQLSTATEs and connection failures to the
// eventsourcing sentinels, and says which are transient (see transient).
func (Dialect) Classify(err error) es.ErrorClass {
	return es.ErrorClass{Kind: kind(err), Transient: transient(err)}
}

// kind returns the sentinel a driver error matches, or nil. A unique
// violation on a system catalog (two sessions creating one table) is
// operational, not an integrity error.
func kind(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "55P03": // lock_not_available
			return es.ErrLockTimeout
		case pe.Code == "23505" && strings.HasPrefix(pe.ConstraintName, "pg_"): // catalog collision
			return es.ErrOperational
		case strings.HasPrefix(pe.Code, "23"): // integrity_constraint_violation
			return es.ErrIntegrity
		case strings.HasPrefix(pe.Code, "22"): // data_exception
			return es.ErrData
		case pe.Code == "54000" || pe.Code == "54001": // program_limit_exceeded, statement_too_complex
			return es.ErrProgramming
		case strings.HasPrefix(pe.Code, "42"), strings.HasPrefix(pe.Code, "3F"): // syntax, undefined table, invalid schema
			return es.ErrProgramming
		}
		return es.ErrOperational // 08 connection, 25 read-only, 40 rollback, 53 resources, 57 operator intervention, ...
	}
	var ne net.Error
	if errors.As(err, &ne) || pgconn.Timeout(err) || errors.Is(err, sql.ErrConnDone) {
		return es.ErrOperational
	}
	return nil
}

// transient reports the errors after which the same call may succeed:
// connection failures (class 08, a lost or refused connection), a
// serialization failure or deadlock (40001, 40P01), lock_not_available
// (55P03), too many connections (53300), the server shutting down or
// starting (57P01, 57P02, 57P03), a catalog collision between sessions
// creating one table, and errors pgx knows were sent before any effect.
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03":
			return true
		case "23505":
			return strings.HasPrefix(pe.ConstraintName, "pg_")
		}
		return strings.HasPrefix(pe.Code, "08")
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn)
}
