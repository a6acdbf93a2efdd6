package eventsourcing_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// The interop vectors' custom value types and their transcodings, as the
// Python test domain defines them (manifest "transcodings").

// EmailAddress is transcoded as email_address_as_str: a string.
type EmailAddress string

// GeoPoint is transcoded as geo_point_as_list: [lat, lon] of decimals.
type GeoPoint struct{ Lat, Lon es.Decimal }

// Address is transcoded as address_as_dict.
type Address struct {
	Line1, City, Postcode, Country string
	Location                       *GeoPoint
}

func registerInteropTranscodings(t testing.TB, tr *es.Transcoder) {
	t.Helper()
	errs := []error{
		es.RegisterTranscoding(tr, es.Transcoding[EmailAddress]{Name: "email_address_as_str",
			Encode: func(e EmailAddress) (any, error) { return string(e), nil },
			Decode: func(d any) (EmailAddress, error) {
				s, ok := d.(string)
				if !ok {
					return "", fmt.Errorf("email address is %T", d)
				}
				return EmailAddress(s), nil
			}}),
		es.RegisterTranscoding(tr, es.Transcoding[GeoPoint]{Name: "geo_point_as_list",
			Encode: func(p GeoPoint) (any, error) { return []any{p.Lat, p.Lon}, nil },
			Decode: func(d any) (GeoPoint, error) {
				l, ok := d.([]any)
				if !ok || len(l) != 2 {
					return GeoPoint{}, fmt.Errorf("geo point is %v", d)
				}
				lat, ok1 := l[0].(es.Decimal)
				lon, ok2 := l[1].(es.Decimal)
				if !ok1 || !ok2 {
					return GeoPoint{}, fmt.Errorf("geo point coordinates %T, %T", l[0], l[1])
				}
				return GeoPoint{lat, lon}, nil
			}}),
		es.RegisterTranscoding(tr, es.Transcoding[Address]{Name: "address_as_dict",
			Encode: func(a Address) (any, error) {
				var loc any
				if a.Location != nil {
					loc = *a.Location
				}
				return es.Object{{Key: "line1", Value: a.Line1}, {Key: "city", Value: a.City}, {Key: "postcode", Value: a.Postcode}, {Key: "country", Value: a.Country}, {Key: "location", Value: loc}}, nil
			},
			Decode: func(d any) (Address, error) {
				m, ok := d.(map[string]any)
				if !ok {
					return Address{}, fmt.Errorf("address is %T", d)
				}
				var a Address
				for k, dst := range map[string]*string{"line1": &a.Line1, "city": &a.City, "postcode": &a.Postcode, "country": &a.Country} {
					if *dst, ok = m[k].(string); !ok {
						return Address{}, fmt.Errorf("address %s is %T", k, m[k])
					}
				}
				switch loc := m["location"].(type) {
				case nil:
				case GeoPoint:
					a.Location = &loc
				default:
					return Address{}, fmt.Errorf("address location is %T", loc)
				}
				return a, nil
			}}),
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Environment variables of the interop tests.
const (
	// envInteropDir lists the vector sets to read (see interopDirs).
	envInteropDir = "EVENTSOURCING_INTEROP_DIR"
	// envRequireInterop=1 fails the interop tests when no vectors are
	// found, instead of skipping them.
	envRequireInterop = "EVENTSOURCING_REQUIRE_INTEROP"
)

// manifestDirKey is the key under which loadManifests records the
// directory a manifest was read from (no manifest has such a key).
const manifestDirKey = "$dir"

// interopDirs returns the directories of the vector sets the interop tests
// read: those EVENTSOURCING_INTEROP_DIR lists (one, or several separated
// by the list separator, ":" on Unix), each of which must hold a
// manifest.json; without it, shared/interop beside the repository (Python
// 9.3's vectors) and each of its subdirectories holding a manifest.json
// (py96: Python 9.6's). With no vectors it skips the test, or fails it if
// EVENTSOURCING_REQUIRE_INTEROP=1.
func interopDirs(t testing.TB) []string {
	t.Helper()
	if list := os.Getenv(envInteropDir); list != "" {
		var dirs []string
		for _, dir := range filepath.SplitList(list) {
			if dir == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
				t.Fatalf("%s names %s, which holds no vector set: %v", envInteropDir, dir, err)
			}
			dirs = append(dirs, dir)
		}
		if len(dirs) > 0 {
			return dirs
		}
	}
	for _, base := range []string{"../shared/interop", "../../shared/interop"} {
		if _, err := os.Stat(filepath.Join(base, "manifest.json")); err != nil {
			continue
		}
		dirs := []string{base}
		subs, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range subs {
			dir := filepath.Join(base, sub.Name())
			if _, err := os.Stat(filepath.Join(dir, "manifest.json")); sub.IsDir() && err == nil {
				dirs = append(dirs, dir)
			}
		}
		return dirs
	}
	msg := "interop vectors not found: set " + envInteropDir + " to the shared/interop folder (or a list of vector sets)"
	if os.Getenv(envRequireInterop) == "1" {
		t.Fatal(msg + " (" + envRequireInterop + "=1 requires them)")
	}
	t.Skip(msg)
	return nil
}

// interopDir returns the directory of the manifest m, as loadManifests
// recorded it.
func interopDir(t testing.TB, m map[string]any) string {
	t.Helper()
	dir, ok := m[manifestDirKey].(string)
	if !ok {
		t.Fatal("manifest without its directory: load it with loadManifests")
	}
	return dir
}

// loadManifests decodes the manifest of every vector set (interopDirs),
// with objects kept in order (as es.Object) and numbers as json.Number.
func loadManifests(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, dir := range interopDirs(t) {
		raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		v, err := ordered(dec)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		m := asMap(v)
		m[manifestDirKey] = dir
		out = append(out, m)
	}
	return out
}

// loadManifest returns the first vector set's manifest, for tests of what
// every set holds alike (the transcoder vectors, the event states).
func loadManifest(t testing.TB) map[string]any {
	t.Helper()
	return loadManifests(t)[0]
}

// forEachInteropSet runs fn in a subtest for each vector set, named after
// the Python library version that wrote it.
func forEachInteropSet(t *testing.T, fn func(t *testing.T, m map[string]any)) {
	t.Helper()
	for _, m := range loadManifests(t) {
		name := "python-" + asMap(m["library"])["version"].(string)
		t.Run(name, func(t *testing.T) { fn(t, m) })
	}
}

// multiRowKey reports whether a tracking table's DDL or primary key
// definition keeps one row per notification (Python before 9.5) rather
// than one per application.
func multiRowKey(t testing.TB, def string) bool {
	t.Helper()
	switch {
	case strings.Contains(def, "(application_name, notification_id)"):
		return true
	case strings.Contains(def, "(application_name)"):
		return false
	}
	t.Fatalf("tracking table of an unknown layout: %s", def)
	return false
}

// sqliteMultiRow returns the tracking layout of a manifest's SQLite file,
// from its tracking table's DDL, and checks the file's tables are the
// Python library's (and so the dialect's) defaults.
func sqliteMultiRow(t testing.TB, file map[string]any) bool {
	t.Helper()
	ddl := map[string]string{}
	for _, raw := range file["schema"].([]any) {
		row := asMap(raw)
		if text, ok := row["sql"].(string); ok && row["type"] == "table" {
			ddl[row["name"].(string)] = text
		}
	}
	for _, name := range []string{"stored_events", "stored_snapshots", "tracking"} {
		if ddl[name] == "" {
			t.Fatalf("the manifest's SQLite file has no table %s (tables: %v)", name, ddl)
		}
	}
	return multiRowKey(t, ddl["tracking"])
}

// postgresLayout returns the tables of a manifest's PostgreSQL store and
// its tracking layout, from the primary key of its tracking table.
func postgresLayout(t testing.TB, pg map[string]any) (events, snapshots, tracking string, multiRow bool) {
	t.Helper()
	tables := asMap(pg["tables"])
	events, snapshots, tracking = tables["events"].(string), tables["snapshots"].(string), tables["tracking"].(string)
	for _, raw := range pg["indexes"].([]any) {
		ix := asMap(raw)
		if ix["table"] == tracking && ix["name"] == tracking+"_pkey" {
			return events, snapshots, tracking, multiRowKey(t, ix["definition"].(string))
		}
	}
	t.Fatalf("the manifest lists no primary key of %s", tracking)
	return
}

func ordered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := es.Object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := ordered(dec)
			if err != nil {
				return nil, err
			}
			obj = append(obj, es.Member{Key: k.(string), Value: v})
		}
		_, err := dec.Token()
		return obj, err
	case json.Delim('['):
		list := []any{}
		for dec.More() {
			v, err := ordered(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token()
		return list, err
	}
	return tok, nil
}

func asMap(v any) map[string]any {
	obj, _ := v.(es.Object)
	m := make(map[string]any, len(obj))
	for _, mem := range obj {
		m[mem.Key] = mem.Value
	}
	return m
}

// typedValue turns the manifest's tagged form ($int, $float, $uuid, ...)
// into the Go value the transcoder writes and reads.
func typedValue(t testing.TB, v any) any {
	t.Helper()
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = typedValue(t, e)
		}
		return out
	case es.Object:
		if len(x) == 1 && strings.HasPrefix(x[0].Key, "$") {
			tag, val := x[0].Key, x[0].Value
			s, _ := val.(string)
			switch tag {
			case "$int":
				if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					return n
				}
				n, _ := new(big.Int).SetString(s, 10)
				return n
			case "$float":
				switch s {
				case "nan":
					return math.NaN()
				case "inf":
					return math.Inf(1)
				case "-inf":
					return math.Inf(-1)
				}
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					t.Fatalf("$float %q: %v", s, err)
				}
				return f
			case "$uuid":
				return uuid.MustParse(s)
			case "$datetime":
				var tm time.Time
				if err := es.NewTranscoder().Decode([]byte(`{"_type_":"datetime_iso","_data_":"`+s+`"}`), &tm); err != nil {
					t.Fatalf("$datetime %q: %v", s, err)
				}
				return tm
			case "$decimal":
				return es.MustParseDecimal(s)
			case "$tuple":
				return typedValue(t, val)
			case "$email_address_as_str":
				return EmailAddress(s)
			case "$geo_point_as_list":
				l := typedValue(t, val).([]any)
				return GeoPoint{l[0].(es.Decimal), l[1].(es.Decimal)}
			case "$address_as_dict":
				m := asMap(typedValue(t, val))
				a := Address{Line1: m["line1"].(string), City: m["city"].(string), Postcode: m["postcode"].(string), Country: m["country"].(string)}
				if p, ok := m["location"].(GeoPoint); ok {
					a.Location = &p
				}
				return a
			}
			t.Fatalf("unknown tag %s", tag)
		}
		out := make(es.Object, len(x))
		for i, m := range x {
			out[i] = es.Member{Key: m.Key, Value: typedValue(t, m.Value)}
		}
		return out
	case json.Number:
		t.Fatalf("untagged number %s in a typed value", x)
	}
	return v
}

// sameValue compares decoded values: objects by keys (map or Object),
// floats bit for bit (NaN equal to NaN), times by instant and offset,
// big integers by value.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case es.Object:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for _, m := range w {
			if gv, ok := g[m.Key]; !ok || !sameValue(gv, m.Value) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case float64:
		g, ok := got.(float64)
		return ok && (math.Float64bits(g) == math.Float64bits(w) || (math.IsNaN(g) && math.IsNaN(w)))
	case *big.Int:
		g, ok := got.(*big.Int)
		return ok && g.Cmp(w) == 0
	case time.Time:
		g, ok := got.(time.Time)
		_, go1 := g.Zone()
		_, wo := w.Zone()
		return ok && g.Equal(w) && go1 == wo && (g.Location() == es.Naive) == (w.Location() == es.Naive)
	case Address:
		g, ok := got.(Address)
		if !ok || (g.Location == nil) != (w.Location == nil) {
			return false
		}
		if g.Location != nil && *g.Location != *w.Location {
			return false
		}
		g.Location, w.Location = nil, nil
		return g == w
	}
	return got == want
}
