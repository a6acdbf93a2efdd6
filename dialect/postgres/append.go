package postgres

// The append function: one statement that appends a group of calls'
// events and tracking records in a transaction of its own (see
// es.AppendFunctioner and docs/writes.md).

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	es "github.com/seed06b138f8/eventsourcing"
)

var _ es.AppendFunctioner = Dialect{}

// appendFunctionVersion is written in the function's comment: a function
// of another version (or of other tables) is replaced by CreateTables.
const appendFunctionVersion = "eventsourcing append function v1"

// appendArgTypes is the function's signature.
const appendArgTypes = "bigint, text[], bigint[], text[], bytea[], integer[], boolean[], text[], bigint[], bigint[], boolean"

// trackingConflictCode is the SQLSTATE the function raises for a tracking
// record that is not after the last one recorded; its DETAIL is the last
// notification ID recorded (multi-row tracking) or empty (single-row).
const trackingConflictCode = "ES001"

// CurrentSchemaQuery returns SELECT current_schema(): the schema tables
// without one are created in, and so their function.
func (Dialect) CurrentSchemaQuery() string { return "SELECT current_schema()" }

// appendFunctionName names the function after its events table, with a
// hash of its tracking table and layout (a function's body names both),
// within PostgreSQL's 63 bytes.
func appendFunctionName(events, tracking es.Table, multiRow bool) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s|%v", tracking.String(), multiRow)
	suffix := fmt.Sprintf("_append_%08x", h.Sum32())
	name := events.Name
	if len(name)+len(suffix) > 63 {
		name = name[:63-len(suffix)]
	}
	return name + suffix
}

// AppendFunction returns the function of events (and tracking, of the
// layout multiRow), both schema-qualified: a PL/pgSQL function, VOLATILE,
// with search_path pinned to pg_catalog, that in one call sets
// lock_timeout for its transaction (set_config(..., true)), takes LOCK
// TABLE events IN EXCLUSIVE MODE (if it writes events, or multi-row
// tracking records), inserts every call's events from arrays (unnest, in
// order) and each call's tracking record (single-row: the upsert that
// honours First; multi-row: the check against the highest recorded, then
// the insert), and NOTIFYs the events table's channel (no payload) if it
// wrote anything and was asked to. With one call, a conflict is the
// statement's error (unique_violation, or ES001 for a tracking record);
// with several, a conflict rolls the first attempt back and each call is
// done again in a block of its own (a subtransaction, as a savepoint),
// the conflicting ones reported by status.
func (d Dialect) AppendFunction(events, tracking es.Table, multiRow bool) es.AppendFunction {
	fn := es.Table{Schema: events.Schema, Name: appendFunctionName(events, tracking, multiRow)}
	qfn, ev, tr := fn.Quote(d), events.Quote(d), tracking.Quote(d)
	sig := qfn + "(" + appendArgTypes + ")"
	layout := "single-row"
	if multiRow {
		layout = "multi-row"
	}
	marker := appendFunctionVersion + ": events " + events.String() + ", tracking " + tracking.String() + " (" + layout + ")"

	insert := func(lo, hi, into string) string {
		return "WITH ins AS (INSERT INTO " + ev + " (originator_id, originator_version, topic, state)" +
			" SELECT u.oid_::uuid, u.ver_, u.top_, u.sta_ FROM unnest(a_ids[" + lo + ":" + hi + "], a_vers[" + lo + ":" + hi + "], a_topics[" + lo + ":" + hi + "], a_states[" + lo + ":" + hi + "])" +
			" WITH ORDINALITY AS u(oid_, ver_, top_, sta_, ord_) ORDER BY u.ord_ RETURNING notification_id)" +
			" SELECT coalesce(array_agg(notification_id ORDER BY notification_id), '{}') INTO " + into + " FROM ins;\n"
	}
	// track records call v_i's tracking record, raising ES001 if it is
	// not after the last recorded.
	track := "IF a_tracked[v_i] THEN\n"
	if multiRow {
		track += "  SELECT max(notification_id) INTO v_last FROM " + tr + " WHERE application_name = a_tnames[v_i];\n" +
			"  IF v_last IS NOT NULL AND a_tlows[v_i] <= v_last THEN\n" +
			"    RAISE EXCEPTION 'tracking record % % is not after the last recorded, %', a_tnames[v_i], a_tids[v_i], v_last USING ERRCODE = '" + trackingConflictCode + "', DETAIL = v_last::text;\n" +
			"  END IF;\n" +
			"  INSERT INTO " + tr + " (application_name, notification_id) VALUES (a_tnames[v_i], a_tids[v_i]);\n"
	} else {
		track += "  INSERT INTO " + tr + " AS t (application_name, notification_id) VALUES (a_tnames[v_i], a_tids[v_i])" +
			" ON CONFLICT (application_name) DO UPDATE SET notification_id = EXCLUDED.notification_id WHERE t.notification_id < a_tlows[v_i];\n" +
			"  GET DIAGNOSTICS v_n = ROW_COUNT;\n" +
			"  IF v_n = 0 THEN\n" +
			"    RAISE EXCEPTION 'tracking record % % is not after the last recorded', a_tnames[v_i], a_tids[v_i] USING ERRCODE = '" + trackingConflictCode + "', DETAIL = '';\n" +
			"  END IF;\n"
	}
	track += "END IF;\n"
	lockTracking := "false"
	if multiRow {
		lockTracking = "true = ANY(a_tracked)"
	}
	channel := "'" + strings.ReplaceAll(Channel(events), "'", "''") + "'"

	body := "#variable_conflict use_column\n" +
		"DECLARE\n" +
		"  v_calls integer := coalesce(array_length(a_counts, 1), 0);\n" +
		"  v_events integer := coalesce(array_length(a_ids, 1), 0);\n" +
		"  v_nids bigint[];\n" +
		"  v_callids bigint[];\n" +
		"  v_written integer := 0;\n" +
		"  v_tracked integer := 0;\n" +
		"  v_redo boolean := false;\n" +
		"  v_i integer; v_lo integer; v_hi integer; v_last bigint; v_n bigint; v_tbl text; v_msg text; v_det text;\n" +
		"BEGIN\n" +
		"IF v_events > 0 OR " + lockTracking + " THEN\n" +
		"  PERFORM set_config('lock_timeout', a_lock_ms::text || 'ms', true);\n" +
		"  LOCK TABLE " + ev + " IN EXCLUSIVE MODE;\n" +
		"END IF;\n" +
		"IF v_calls = 1 THEN\n" +
		"  v_i := 1;\n" +
		"  IF v_events > 0 THEN\n" +
		"  " + insert("1", "v_events", "v_nids") +
		"  END IF;\n" +
		track +
		"  v_written := v_events;\n" +
		"  v_tracked := CASE WHEN a_tracked[1] THEN 1 ELSE 0 END;\n" +
		"ELSE\n" +
		"  BEGIN\n" +
		"    IF v_events > 0 THEN\n" +
		"    " + insert("1", "v_events", "v_nids") +
		"    END IF;\n" +
		"    FOR v_i IN 1..v_calls LOOP\n" +
		track +
		"    END LOOP;\n" +
		"    v_written := v_events;\n" +
		"    SELECT count(*) INTO v_tracked FROM unnest(a_tracked) AS x WHERE x;\n" +
		"  EXCEPTION WHEN unique_violation OR SQLSTATE '" + trackingConflictCode + "' THEN\n" +
		"    v_redo := true;\n" +
		"  END;\n" +
		"  IF v_redo THEN\n" +
		"    v_hi := 0;\n" +
		"    FOR v_i IN 1..v_calls LOOP\n" +
		"      v_lo := v_hi + 1;\n" +
		"      v_hi := v_hi + a_counts[v_i];\n" +
		"      v_callids := '{}';\n" +
		"      BEGIN\n" +
		"        IF a_counts[v_i] > 0 THEN\n" +
		"        " + insert("v_lo", "v_hi", "v_callids") +
		"        END IF;\n" +
		track +
		"        v_written := v_written + a_counts[v_i];\n" +
		"        IF a_tracked[v_i] THEN v_tracked := v_tracked + 1; END IF;\n" +
		"        RETURN QUERY SELECT 0, v_i, x, NULL::text FROM unnest(v_callids) AS x;\n" +
		"        IF a_counts[v_i] = 0 THEN RETURN QUERY SELECT 0, v_i, NULL::bigint, NULL::text; END IF;\n" +
		"      EXCEPTION WHEN unique_violation THEN\n" +
		"        GET STACKED DIAGNOSTICS v_tbl = TABLE_NAME, v_msg = MESSAGE_TEXT;\n" +
		"        RETURN QUERY SELECT CASE WHEN v_tbl = " + quoteLiteral(tracking.Name) + " THEN 3 ELSE 1 END, v_i, NULL::bigint, v_msg;\n" +
		"      WHEN SQLSTATE '" + trackingConflictCode + "' THEN\n" +
		"        GET STACKED DIAGNOSTICS v_det = PG_EXCEPTION_DETAIL;\n" +
		"        RETURN QUERY SELECT 2, v_i, nullif(v_det, '')::bigint, NULL::text;\n" +
		"      END;\n" +
		"    END LOOP;\n" +
		"  END IF;\n" +
		"END IF;\n" +
		"IF a_notify AND (v_written > 0 OR v_tracked > 0) THEN\n" +
		"  PERFORM pg_notify(" + channel + ", '');\n" +
		"END IF;\n" +
		"IF NOT v_redo THEN\n" +
		"  RETURN QUERY SELECT 0, NULL::integer, x, NULL::text FROM unnest(v_nids) AS x;\n" +
		"END IF;\n" +
		"END"

	create := "CREATE OR REPLACE FUNCTION " + qfn + "(a_lock_ms bigint, a_ids text[], a_vers bigint[], a_topics text[], a_states bytea[]," +
		" a_counts integer[], a_tracked boolean[], a_tnames text[], a_tids bigint[], a_tlows bigint[], a_notify boolean)" +
		" RETURNS TABLE (r_status integer, r_call integer, r_id bigint, r_detail text)" +
		" LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $es_append$\n" + body + "\n$es_append$"
	// One statement, under the DDL lock: nothing if this version's
	// function is there (another process made it meanwhile: calls of it
	// go on undisturbed); otherwise functions of the same name go first
	// (an older version's, of another signature or return type: CREATE
	// OR REPLACE would add an overload, or refuse to change the return
	// type), then this one is made.
	ddl := "DO $es_fn$ DECLARE f regprocedure; BEGIN\n" +
		"IF coalesce(obj_description(to_regprocedure(" + quoteLiteral(sig) + "), 'pg_proc') = " + quoteLiteral(marker) + ", false) THEN RETURN; END IF;\n" +
		"FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.proname = " + quoteLiteral(fn.Name) +
		" AND p.pronamespace = to_regnamespace(" + quoteLiteral(d.QuoteIdentifier(events.Schema)) + ") LOOP\n" +
		"  EXECUTE 'DROP FUNCTION ' || f::text;\n" +
		"END LOOP;\n" +
		"EXECUTE $es_create$" + create + "$es_create$;\n" +
		"EXECUTE " + quoteLiteral("COMMENT ON FUNCTION "+sig+" IS "+quoteLiteral(marker)) + ";\n" +
		"END $es_fn$"

	return es.AppendFunction{
		Name:   fn.String(),
		Exists: "SELECT coalesce(obj_description(to_regprocedure($1), 'pg_proc') = $2, false)",
		Args:   []any{sig, marker},
		Create: append(d.createSchema(events), ddl),
		Call:   "SELECT r_status, r_call, r_id, r_detail FROM " + qfn + "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
		Lookup: "SELECT k.ord_, e.topic, e.state, e.notification_id FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS k(oid_, ver_, ord_)" +
			" JOIN " + ev + " e ON e.originator_id = k.oid_::uuid AND e.originator_version = k.ver_",
		BackendPIDQuery: "SELECT pg_backend_pid()",
		EndBackend:      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND pid <> pg_backend_pid()",
		BackendAlive:    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND pid <> pg_backend_pid())",
	}
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// AppendRolledBack reports an error the server sent as an ERROR (not
// FATAL or PANIC): the statement's transaction, which in autocommit mode
// is the call's own, was rolled back.
func (Dialect) AppendRolledBack(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity == "ERROR"
}

// AppendTrackingConflict reports whether err, a call's error, is its
// tracking record's conflict: ES001 raised by the function (last is the
// highest recorded with multi-row tracking, -1 with single-row), or a
// unique violation on the tracking table (last -1).
func (Dialect) AppendTrackingConflict(err error, tracking es.Table) (last int64, ok bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return 0, false
	}
	switch {
	case pe.Code == trackingConflictCode:
		if n, err := strconv.ParseInt(pe.Detail, 10, 64); err == nil {
			return n, true
		}
		return -1, true
	case pe.Code == "23505" && pe.TableName == tracking.Name:
		return -1, true
	}
	return 0, false
}
