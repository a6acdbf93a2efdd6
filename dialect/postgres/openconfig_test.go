package postgres_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// testConfig returns the test server's PostgresConfig, from its DSN (a
// postgres:// URL).
func testConfig(t *testing.T) es.PostgresConfig {
	t.Helper()
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		t.Skipf("%s is not a postgres:// URL", pgtest.EnvDSN)
	}
	c := es.PostgresConfig{Host: u.Hostname(), User: u.User.Username(), DBName: u.Path[1:]}
	c.Password, _ = u.User.Password()
	if p := u.Port(); p != "" {
		c.Port, _ = strconv.Atoi(p)
	}
	return c
}

// sessionSSL opens c and reports whether its session uses TLS, or the
// open's error.
func sessionSSL(t *testing.T, c es.PostgresConfig) (bool, error) {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.OpenConfig(ctx, &c)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var ssl bool
	err = db.QueryRowContext(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
	return ssl, err
}

// TestOpenConfigTLS: OpenConfig uses PostgresConfig.SSLMode and
// SSLRootCert, and without them libpq's PGSSLMODE, as the Python library
// (through libpq) does. (sslmode was always prefer: a server offering TLS
// was always connected to with it, and nothing else could be asked for.)
func TestOpenConfigTLS(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGSSLROOTCERT", "")
	c := testConfig(t)
	c.SSLMode = "require"
	if ssl, err := sessionSSL(t, c); err != nil || !ssl {
		t.Skipf("the test server offers no TLS (sslmode=require: %v, %v)", ssl, err)
	}
	c.SSLMode = "disable"
	if ssl, err := sessionSSL(t, c); err != nil || ssl {
		t.Errorf("SSLMode disable: TLS %v, %v; want a plain session", ssl, err)
	}
	c.SSLMode = ""
	t.Setenv("PGSSLMODE", "disable")
	if ssl, err := sessionSSL(t, c); err != nil || ssl {
		t.Errorf("PGSSLMODE=disable, SSLMode empty: TLS %v, %v; want a plain session", ssl, err)
	}
	c.SSLMode = "require"
	if ssl, err := sessionSSL(t, c); err != nil || !ssl {
		t.Errorf("SSLMode require over PGSSLMODE=disable: TLS %v, %v; want TLS", ssl, err)
	}
	t.Setenv("PGSSLMODE", "")
	c.SSLMode, c.SSLRootCert = "verify-full", filepath.Join(t.TempDir(), "missing-ca.pem")
	if _, err := sessionSSL(t, c); err == nil {
		t.Errorf("SSLMode verify-full with a missing SSLRootCert: connected")
	}
}
