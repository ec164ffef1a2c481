package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// print writes v as JSON under --json, otherwise calls human.
func (e *env) print(v any, human func(io.Writer)) error {
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(e.stdout)
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress reports long work on stderr when stderr is a terminal and
// --json is off: a single line redrawn in place with rate and ETA.
type progress struct {
	w     io.Writer
	what  string
	start time.Time
	last  time.Time
	on    bool
}

func (e *env) progress(what string) *progress {
	return &progress{w: e.stderr, what: what, start: time.Now(), on: !e.json && isTerminal(e.stderr)}
}

// update shows done of total (total 0: unknown).
func (p *progress) update(done, total int64) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	elapsed := time.Since(p.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-9)
	line := fmt.Sprintf("%s: %s", p.what, thousands(done))
	if total > 0 {
		pct := 100 * float64(done) / float64(total)
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
		}
		line = fmt.Sprintf("%s: %s / %s (%.0f%%) · %s/s · ETA %s", p.what, thousands(done), thousands(total), pct, thousands(int64(rate)), eta)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// done clears the progress line.
func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// thousands formats n with comma separators: 12,345.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
