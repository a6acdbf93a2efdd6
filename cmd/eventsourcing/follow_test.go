package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestFollow: log --follow prints the events there are, then an event
// written by another process (this test, through the library) within a
// second; Ctrl-C (SIGINT) ends it with exit status 0.
func TestFollow(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.make(t, pipeline{name: "zlib", compress: true})
			s.fill(t, 1, 2)
			cmd := exec.Command(toolPath, append([]string{"log", "--follow", "--json"}, s.args...)...)
			cmd.Env = cleanEnv(s.env...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan logLine, 10)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					var l logLine
					if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
						t.Errorf("not a JSON line: %q", sc.Text())
					}
					lines <- l
				}
				close(lines)
			}()
			next := func(within time.Duration) (logLine, bool) {
				select {
				case l, ok := <-lines:
					return l, ok
				case <-time.After(within):
					return logLine{}, false
				}
			}
			for want := int64(1); want <= 2; want++ {
				if l, ok := next(10 * time.Second); !ok || l.ID != want {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("log --follow: line %+v, %v; want notification %d (stderr: %s)", l, ok, want, stderr.String())
				}
			}
			start := time.Now()
			id := s.put(t, s.ids[0], 3, "followed")
			l, ok := next(5 * time.Second)
			elapsed := time.Since(start)
			if !ok || l.ID != id || string(l.State) == "" {
				t.Fatalf("log --follow after a write: %+v, %v; want notification %d", l, ok, id)
			}
			t.Logf("the new event was printed %v after the write began", elapsed)
			if elapsed > time.Second {
				t.Errorf("log --follow printed the new event %v after it was written, want within a second", elapsed)
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("log --follow after SIGINT: %v, want exit status 0", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("log --follow did not end within 5 s of SIGINT")
			}
		})
	}
}
