package main

// This file writes the commands' output: readable lines, or JSON lines
// with --json, and progress on a terminal.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// printer writes a command's records to standard output.
type printer struct {
	w    *bufio.Writer
	json bool
}

func newPrinter(w io.Writer, jsonLines bool) *printer {
	return &printer{w: bufio.NewWriter(w), json: jsonLines}
}

// line writes a readable line, unless the output is JSON.
func (p *printer) line(format string, args ...any) {
	if !p.json {
		fmt.Fprintf(p.w, format+"\n", args...)
	}
}

// record writes v as a JSON line, if the output is JSON.
func (p *printer) record(v any) {
	if p.json {
		b, err := json.Marshal(v)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		p.w.Write(b)
		p.w.WriteByte('\n')
	}
}

func (p *printer) flush() error { return p.w.Flush() }

// progress shows how far a long command has got, on a terminal only, at
// most a few times a second.
type progress struct {
	w     io.Writer // nil: not shown
	last  time.Time
	shown bool
}

func newProgress(c *cli) *progress {
	if !c.stderrTerminal {
		return &progress{}
	}
	return &progress{w: c.stderr}
}

// show shows the line, if the last was shown long enough ago.
func (p *progress) show(format string, args ...any) {
	if p.w == nil || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
	p.shown = true
}

// done clears the progress line.
func (p *progress) done() {
	if p.w != nil && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// percent returns n of total as a percentage, for progress lines.
func percent(n, total int64) float64 {
	if total <= 0 {
		return 100
	}
	return 100 * float64(n) / float64(total)
}
