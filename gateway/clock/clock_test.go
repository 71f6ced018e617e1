package clock

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOffsetFile: Now follows the file the environment names, rewritten
// while running; a file that is not a duration leaves the last offset.
func TestOffsetFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "offset")
	// write replaces the file whole, as the chaos suite does: a file
	// rewritten in place is empty for a moment, and empty means no offset.
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	near := func(want time.Duration) bool {
		return (time.Until(Now()) - want).Abs() < time.Second
	}
	waitFor := func(want time.Duration) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !near(want) {
			if time.Now().After(deadline) {
				t.Fatalf("offset %s, want %s", time.Until(Now()), want)
			}
			time.Sleep(pollInterval) // the watcher reads the file at this pace
		}
	}
	write("-90s")
	t.Setenv(TestOffsetEnv, file)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); offset.Store(0) }()
	WatchTestOffset(ctx, slog.New(slog.DiscardHandler))
	if !near(-90 * time.Second) {
		t.Fatalf("offset %s after the first read, want -90s", time.Until(Now()))
	}
	write("1h")
	waitFor(time.Hour)
	write("an hour")
	time.Sleep(5 * pollInterval) // a few reads of the bad file
	if !near(time.Hour) {
		t.Errorf("a file that is not a duration changed the offset to %s", time.Until(Now()))
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	waitFor(0)
}

// TestNoHook: without the environment variable, Now is the system clock.
func TestNoHook(t *testing.T) {
	t.Setenv(TestOffsetEnv, "")
	WatchTestOffset(context.Background(), slog.New(slog.DiscardHandler))
	if d := time.Until(Now()).Abs(); d > time.Second {
		t.Errorf("Now is %s off the system clock", d)
	}
}
