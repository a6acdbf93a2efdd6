package postgres

// Replication: the WAL position queries of the PostgreSQL dialect.

import (
	es "github.com/seed06b138f8/eventsourcing"
)

var _ es.Replication = Dialect{}

// PositionQuery returns the primary's current WAL insert position as a
// bigint: pg_current_wal_insert_lsn(), at or past the end of every commit
// record written before it, flushed or not. (The write position,
// pg_current_wal_lsn(), can be below a commit that is acknowledged but not
// yet written out, as with synchronous_commit off: a standby that has
// replayed it may not show that commit.) The position is taken as the end
// of the last record, as a standby reports what it has replayed (see
// walEnd). PostgreSQL refuses it on a standby ("recovery is in progress").
func (Dialect) PositionQuery() string {
	return "SELECT " + walEnd("pg_current_wal_insert_lsn()")
}

// walEnd returns SQL for the WAL position lsn (an SQL pg_lsn) as a bigint
// and as the end of the record before it. The insert position is where the
// next record starts: after a record that ends at a page boundary, that is
// past the next page's header (24 bytes, 40 at the start of a segment),
// where pg_last_wal_replay_lsn() on a standby that has replayed everything
// is the boundary itself, and stays so until the primary writes again.
// Taken back to the boundary, the position is still past every record
// before it. (The header sizes are those of 64-bit builds, whose alignment
// is 8 bytes.)
func walEnd(lsn string) string {
	return "(SELECT CASE WHEN p % pg_size_bytes(current_setting('wal_segment_size')) = 40 THEN p - 40" +
		" WHEN p % current_setting('wal_block_size')::bigint = 24 THEN p - 24 ELSE p END" +
		" FROM (SELECT (" + lsn + " - '0/0'::pg_lsn)::bigint AS p) AS insert_position)"
}

// ReplicaQuery returns pg_is_in_recovery(), pg_last_wal_replay_lsn() as a
// bigint (0 when there is none: not a standby), and the seconds since
// pg_last_xact_replay_timestamp() (NULL before the first replayed commit).
func (Dialect) ReplicaQuery() string {
	return "SELECT pg_is_in_recovery()," +
		" COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)," +
		" EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp()))::float8"
}
