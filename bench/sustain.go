package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to reset a Postgres database between runs
)

// sustain drives mixed writes (an audit entry, a payment and a new
// session in turn, from every client) against base for o.sustain, and
// samples the server's gauges every sampleEvery: the lag of a projection
// group is how long ago the ledger head was where the group is now. Then
// it stops the load and times how long every group takes to reach the
// head.
func sustain(o options, base, key, adminToken string) error {
	if adminToken == "" {
		return fmt.Errorf("-sustain needs the server's operator token to read its gauges (-admin-token)")
	}
	c := newClient(o.concurrency)
	if key == "" {
		var err error
		if key, err = bootstrap(c, base); err != nil {
			return err
		}
	}
	sessions := make([]string, o.concurrency)
	for i := range sessions {
		var r struct {
			SessionID string `json:"session_id"`
		}
		body := fmt.Sprintf(`{"agent_id":"sustain-%d","scopes":["read","write"],"spend_limit":1000000,"ttl":86400}`, i)
		if st, err := c.call("POST", base+"/v1/sessions", key, body, &r); err != nil || st != 201 {
			return fmt.Errorf("create session: status %d, %v", st, err)
		}
		sessions[i] = r.SessionID
	}
	if _, _, err := gauges(base, adminToken); err != nil {
		return err
	}
	fmt.Printf("\nSustained writes for %s (%d clients: audit entries, payments and new sessions in turn)\n", o.sustain, o.concurrency)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path, body, want := "/v1/audit", fmt.Sprintf(`{"session_id":%q,"tool":"search","action":"q-%d"}`, sessions[w], i), 201
				switch i % 3 {
				case 1:
					path, body, want = "/v1/payments/authorize", fmt.Sprintf(`{"session_id":%q,"amount":0.01}`, sessions[w]), 200
				case 2:
					path, body, want = "/v1/sessions", fmt.Sprintf(`{"agent_id":"sustain-new-%d-%d","ttl":600}`, w, i), 201
				}
				if st, err := c.call("POST", base+path, key, body, nil); err != nil || st != want {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	const sampleEvery = 100 * time.Millisecond
	type sample struct {
		at   time.Time
		head int64
	}
	var history []sample // the ledger head over time
	var lags []time.Duration
	lagOf := func(now time.Time, pos int64) time.Duration {
		// The first time the head was at or past pos.
		i := sort.Search(len(history), func(i int) bool { return history[i].head >= pos })
		if i == len(history) {
			return 0
		}
		return now.Sub(history[i].at)
	}
	start := time.Now()
	var worst time.Duration
	worstGroup := ""
	lastReport := start
	for time.Since(start) < o.sustain {
		time.Sleep(sampleEvery)
		head, groups, err := gauges(base, adminToken)
		if err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		now := time.Now()
		history = append(history, sample{now, head})
		var lag time.Duration
		for g, pos := range groups {
			if pos >= head {
				continue
			}
			l := lagOf(now, pos+1)
			if l > lag {
				lag = l
			}
			if l > worst {
				worst, worstGroup = l, g
			}
		}
		lags = append(lags, lag)
		if now.Sub(lastReport) >= 10*time.Second {
			fmt.Printf("  %3.0f s: %d writes, %.0f/s, head %d, lag now %s, worst so far %s\n",
				now.Sub(start).Seconds(), ok.Load(), float64(ok.Load())/now.Sub(start).Seconds(), head, ms(lag), ms(worst))
			lastReport = now
		}
	}
	close(stop)
	wg.Wait()
	loadEnd := time.Now()
	elapsed := loadEnd.Sub(start)
	head, _, err := gauges(base, adminToken)
	if err != nil {
		return err
	}
	var caughtUp time.Duration = -1
	for time.Since(loadEnd) < 30*time.Second {
		_, groups, err := gauges(base, adminToken)
		if err != nil {
			return err
		}
		behind := false
		for _, pos := range groups {
			behind = behind || pos < head
		}
		if !behind {
			caughtUp = time.Since(loadEnd)
			break
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	pct := func(p float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	fmt.Printf("%d writes in %s (%.0f/s), %d failed; %d samples of the projections' lag behind the ledger head\n",
		ok.Load(), elapsed.Round(time.Millisecond), float64(ok.Load())/elapsed.Seconds(), failed.Load(), len(lags))
	fmt.Printf("lag: median %s, p99 %s, max %s (group %s)\n", ms(pct(0.5)), ms(pct(0.99)), ms(worst), orNone(worstGroup))
	if caughtUp < 0 {
		fmt.Printf("the projections had not reached the head (%d) 30 s after the load stopped\n", head)
	} else {
		fmt.Printf("every group reached the head (%d) %s after the load stopped\n", head, ms(caughtUp))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// gauges reads the ledger head and every projection group's position from
// the server's Prometheus metrics.
func gauges(base, adminToken string) (head int64, groups map[string]int64, err error) {
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET /metrics: %s (is -admin-token the server's operator token?)", resp.Status)
	}
	groups = map[string]int64{}
	sawHead := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, perr := strconv.ParseFloat(value, 64)
		if perr != nil {
			continue
		}
		switch {
		case name == "haldir_ledger_position":
			head, sawHead = int64(v), true
		case strings.HasPrefix(name, `haldir_projection_position{group="`):
			g := strings.TrimSuffix(strings.TrimPrefix(name, `haldir_projection_position{group="`), `"}`)
			groups[g] = int64(v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, nil, err
	}
	if !sawHead || len(groups) == 0 {
		return 0, nil, fmt.Errorf("GET /metrics holds no haldir_ledger_position or haldir_projection_position")
	}
	return head, groups, nil
}

// requireEmpty refuses a Postgres database that already holds tables: the
// bench empties its database between runs, so it must be one made for it.
func requireEmpty(url string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		return fmt.Errorf("read the database's tables: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("the database at -database-url holds %d tables; the bench needs an empty database made for it (it empties it between runs)", n)
	}
	return nil
}

// resetDatabase empties the Postgres database at url (its public schema),
// so that the next run starts on a fresh store.
func resetDatabase(url string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		return fmt.Errorf("reset the database for a fresh run: %w", err)
	}
	return nil
}
