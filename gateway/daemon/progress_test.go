package daemon

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestReporterBlocks: a counted step is reported on its first call, then at
// most every ReportEvery, and on its last call always.
func TestReporterBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log bytes.Buffer
		var got []string
		r := newReporter(slog.New(slog.NewTextHandler(&log, nil)), func(s string) { got = append(got, s) })
		for done := uint64(1); done <= 100; done++ {
			r.blocks("indexing the block log", done, 100)
			time.Sleep(time.Second / 4) // block 21 comes ReportEvery after block 1
		}
		want := []string{"indexing the block log: block 1 of 100", "indexing the block log: block 21 of 100",
			"indexing the block log: block 41 of 100", "indexing the block log: block 61 of 100",
			"indexing the block log: block 81 of 100", "indexing the block log: block 100 of 100"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("statuses:\n%q\nwant\n%q", got, want)
		}
		if n := strings.Count(log.String(), `msg="indexing the block log"`); n != len(want) {
			t.Errorf("%d log lines, want %d:\n%s", n, len(want), log.String())
		}
		// Another step is reported at once.
		got = nil
		r.blocks("replaying the block log", 1, 5)
		if len(got) != 1 {
			t.Errorf("a new step's first call: statuses %q", got)
		}
	})
}

// TestReporterDuring: a step that cannot count is reported when it begins
// and every ReportEvery while it runs, with the title it last gave itself,
// and not after it returned.
func TestReporterDuring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log bytes.Buffer
		var got []string
		r := newReporter(slog.New(slog.NewTextHandler(&log, nil)), func(s string) { got = append(got, s) })
		err := r.during("opening the index", func(retitle func(string)) error {
			time.Sleep(7 * time.Second)
			retitle("upgrading the index")
			time.Sleep(4 * time.Second)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		want := []string{"opening the index", "opening the index (5s)", "upgrading the index", "upgrading the index (10s)"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("statuses:\n%q\nwant\n%q", got, want)
		}
		if n := strings.Count(log.String(), `msg="still opening the index"`); n != 2 {
			t.Errorf("%d log lines, want 2:\n%s", n, log.String())
		}
	})
}
