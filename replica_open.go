// OpenReplicated and ReplicatedStore: a PostgreSQL store opened from a
// Config with its read hosts (POSTGRES_READ_HOSTS) as standbys, and the
// parsing of the read host list.

package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ReplicatedStore is a [Store] whose Events is a [ReplicatedRecorder] and
// whose Snapshots is a [ReplicatedSnapshotRecorder]: see [OpenReplicated].
type ReplicatedStore struct {
	*Store
	// Replicated is Store.Recorder, as its own type (Standbys, Position).
	Replicated *ReplicatedRecorder
}

// Close stops checking the standbys and closes their databases and the
// primary's.
func (s *ReplicatedStore) Close() error {
	s.Replicated.Close()
	return s.Store.Close()
}

// OpenReplicated is [Open] for a PostgreSQL store with standbys
// (Config.Postgres.ReadHosts, POSTGRES_READ_HOSTS): it opens the primary as
// Open does, then each read host with the primary's settings (database,
// user, password, pool) and its own host and port, and routes reads there
// as [NewReplicatedRecorder] describes. A standby that cannot be reached is
// skipped until it can. Read hosts with another persistence module are an
// error matching ErrProgramming; with none, every read goes to the
// primary.
func OpenReplicated(ctx context.Context, cfg *Config) (*ReplicatedStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Module() != ModulePostgres {
		return nil, &ConfigError{Name: "Config.PersistenceModule", Value: cfg.PersistenceModule, Reason: "standbys (read hosts) need postgres"}
	}
	open, err := lookupOpener(ModulePostgres)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	primary, ok := st.Recorder.(*SQLRecorder)
	snaps, ok2 := st.Snapshots.(*SQLSnapshotRecorder)
	if !ok || !ok2 {
		st.Close()
		return nil, fmt.Errorf("%w: OpenReplicated: Open returned %T and %T", ErrProgramming, st.Recorder, st.Snapshots)
	}
	hosts, err := readHosts(cfg.Postgres.ReadHosts, cfg.Postgres.Port)
	if err != nil {
		st.Close()
		return nil, &ConfigError{Name: "Config.Postgres.ReadHosts", Value: cfg.Postgres.ReadHosts, Reason: err.Error()}
	}
	var standbys []Standby
	for _, hp := range hosts {
		host, p, _ := net.SplitHostPort(hp)
		port, _ := strconv.Atoi(p)
		c := *cfg
		c.Postgres.Host, c.Postgres.Port, c.Postgres.ReadHosts = host, port, ""
		standbys = append(standbys, Standby{
			Name: hp,
			Open: func(ctx context.Context) (*sql.DB, error) {
				db, _, err := open(ctx, &c)
				return db, err
			},
		})
	}
	rr, err := NewReplicatedRecorder(ctx, primary, standbys, &ReplicaOptions{MaxLag: cfg.Postgres.MaxReplicaLag})
	if err != nil {
		st.Close()
		return nil, err
	}
	st.Recorder = rr
	st.Snapshots = rr.Snapshots(snaps)
	return &ReplicatedStore{Store: st, Replicated: rr}, nil
}

// readHosts parses a comma-separated list of read hosts
// (POSTGRES_READ_HOSTS): each "host" or "host:port" ("[::1]:5433" for
// IPv6), with defaultPort (zero: 5432) when it has none. It returns them
// as host:port; an empty list is none.
func readHosts(list string, defaultPort int) ([]string, error) {
	if defaultPort == 0 {
		defaultPort = 5432
	}
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, errors.New("an empty host in the list")
		}
		if !strings.Contains(s, ":") || (strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")) {
			out = append(out, net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(defaultPort)))
			continue
		}
		host, p, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want host or host:port ([addr]:port for IPv6)", s)
		}
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 || host == "" {
			return nil, fmt.Errorf("%q: want host or host:port with a TCP port", s)
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return out, nil
}
