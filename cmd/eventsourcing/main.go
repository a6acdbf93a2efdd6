// Command eventsourcing inspects, follows, verifies and copies the event
// stores of the eventsourcing library (and of the Python eventsourcing
// library, whose tables are the same): SQLite files and PostgreSQL
// databases.
//
// Install it with
//
//	go install github.com/seed06b138f8/eventsourcing/cmd/eventsourcing@latest
//
// Usage:
//
//	eventsourcing COMMAND --app NAME [flags] [arguments]
//
// The commands are:
//
//	info      the store: backend, tables and their layout, counts, tracking records
//	log       the notification log, one line per event; --follow keeps following
//	events    one aggregate's events, and its latest snapshot
//	verify    read every row of every table and report each one that is wrong
//	copy      copy the store to another database (SQLite <-> PostgreSQL), resumably
//
// The store is configured as the library configures it, from the
// environment variables [eventsourcing.LoadConfig] reads (PERSISTENCE_MODULE,
// SQLITE_DBNAME, POSTGRES_HOST, ..., CIPHER_KEY, COMPRESSOR_TOPIC), looked
// up with the application name as prefix first (BANKACCOUNTS_SQLITE_DBNAME
// before SQLITE_DBNAME). --app NAME gives the name (it also names the
// PostgreSQL tables, bankaccounts_events). Flags override the environment:
//
//	--db URL|PATH     a postgres:// or postgresql:// URL, or an SQLite file
//	                  (PERSISTENCE_MODULE and its connection variables)
//	--schema NAME     the PostgreSQL schema (POSTGRES_SCHEMA)
//	-e NAME=VALUE     any variable LoadConfig reads, such as -e CIPHER_KEY=...
//	                  (repeatable; prefixed or not, it wins over the environment)
//	--json            JSON lines on standard output, for scripts
//
// The tool never creates or changes the tables of the store it reads; copy
// creates the destination's tables as the library does.
//
// Exit status: 0 on success; 1 if the command failed or verify found a bad
// row; 2 for a usage error. An interrupted log --follow (Ctrl-C) exits 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// A command is one subcommand of the tool.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cli, args []string) error
}

var commands = []command{
	{"info", "show the store: backend, tables, counts, tracking records", runInfo},
	{"log", "print the notification log [--after ID] [--limit N] [--topic T]... [--follow]", runLog},
	{"events", "print an aggregate's events and its latest snapshot: events ID [--after V] [--to V]", runEvents},
	{"verify", "check every row of every table; exit status 1 if any is bad", runVerify},
	{"copy", "copy the store to --to URL|PATH, resumably, and verify the copy", runCopy},
}

// cli is what a command runs with: its output streams and environment.
type cli struct {
	stdout io.Writer
	stderr io.Writer
	// lookup reads environment variables (os.LookupEnv).
	lookup func(string) (string, bool)
	// stderrTerminal: progress is shown on stderr.
	stderrTerminal bool
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errReported says that a command has reported its failure already (verify
// found bad rows): exit status 1 with nothing more printed.
var errReported = errors.New("reported")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, lookup: os.LookupEnv, stderrTerminal: isTerminal(os.Stderr)}
	os.Exit(c.main(ctx, os.Args[1:]))
}

// main runs the command line args and returns the exit status.
func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage(c.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, cmd := range commands {
		if cmd.name != args[0] {
			continue
		}
		err := cmd.run(ctx, c, args[1:])
		var ue *usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, errReported):
			return exitFail
		case errors.As(err, &ue):
			fmt.Fprintf(c.stderr, "eventsourcing %s: %s\nRun 'eventsourcing %s -h' for its flags.\n", cmd.name, ue.msg, cmd.name)
			return exitUsage
		default:
			fmt.Fprintf(c.stderr, "eventsourcing %s: %v\n", cmd.name, err)
			return exitFail
		}
	}
	fmt.Fprintf(c.stderr, "eventsourcing: unknown command %q\n\n", args[0])
	c.usage(c.stderr)
	return exitUsage
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: eventsourcing COMMAND --app NAME [flags] [arguments]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, `
The store is configured from the environment as the library's LoadConfig
reads it (PERSISTENCE_MODULE, SQLITE_DBNAME, POSTGRES_*, CIPHER_KEY,
COMPRESSOR_TOPIC, ...), prefixed lookups first (BANKACCOUNTS_SQLITE_DBNAME).
Flags override it: --db URL|PATH, --schema NAME, -e NAME=VALUE. --json
prints JSON lines. Run 'eventsourcing COMMAND -h' for a command's flags.
`)
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
