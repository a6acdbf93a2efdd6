package postgres

import (
	es "github.com/seed06b138f8/eventsourcing"
)

var _ es.Replication = Dialect{}

// PositionQuery returns the primary's current WAL write position as a
// bigint: pg_current_wal_lsn(), which every commit acknowledged before it
// lies within (with synchronous_commit on, the default). PostgreSQL refuses
// it on a standby ("recovery is in progress").
func (Dialect) PositionQuery() string {
	return "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"
}

// ReplicaQuery returns pg_is_in_recovery(), pg_last_wal_replay_lsn() as a
// bigint (0 when there is none: not a standby), and the seconds since
// pg_last_xact_replay_timestamp() (NULL before the first replayed commit).
func (Dialect) ReplicaQuery() string {
	return "SELECT pg_is_in_recovery()," +
		" COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)," +
		" EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp()))::float8"
}
