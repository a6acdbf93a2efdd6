package postgres

import (
	"context"
	"os"
	"testing"
)

// TestWALEnd: a WAL position just past a page header (where the insert
// position is after a record that ends at a page boundary) is taken back to
// the boundary, where a standby's replay position stops; any other is kept.
func TestWALEnd(t *testing.T) {
	dsn := os.Getenv("EVENTSOURCING_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set EVENTSOURCING_POSTGRES_DSN to run the PostgreSQL tests (see README)")
	}
	ctx := context.Background()
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seg int64
	if err := db.QueryRowContext(ctx, "SELECT pg_size_bytes(current_setting('wal_segment_size'))").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want int64 }{
		{5*8192 + 24, 5 * 8192}, // after a short page header
		{3*seg + 40, 3 * seg},   // after a segment's long header
		{3*seg + 8192 + 24, 3*seg + 8192},
		{5*8192 + 32, 5*8192 + 32}, // a record's end
		{5*8192 + 40, 5*8192 + 40}, // a record's end: not a segment's start
		{5 * 8192, 5 * 8192},
		{123456, 123456},
	} {
		var got int64
		if err := db.QueryRowContext(ctx, "SELECT "+walEnd("'0/0'::pg_lsn + $1::bigint"), c.in).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("walEnd(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	var p int64
	if err := db.QueryRowContext(ctx, Dialect{}.PositionQuery()).Scan(&p); err != nil || p <= 0 {
		t.Errorf("PositionQuery: %d, %v", p, err)
	}
}
