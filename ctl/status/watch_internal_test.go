package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/ctl/printer"
)

// TestShowInPlace: on a terminal a refresh starts at the cursor's home,
// clears each line's rest and the screen below it, so the previous one
// leaves nothing behind.
func TestShowInPlace(t *testing.T) {
	w := watch{on: true, interval: 2 * time.Second}
	var out bytes.Buffer
	frame := bytes.NewBufferString("SERVICE  DESIRED\nauth     5%\n")
	if err := w.show(&out, frame, printer.Table, true, time.Date(2026, 12, 7, 6, 30, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := "\x1b[Hevery 2s · 06:30:00 · Ctrl-C ends\x1b[K\n\x1b[K\nSERVICE  DESIRED\x1b[K\nauth     5%\x1b[K\n\x1b[J"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if isTerminal(&out) {
		t.Error("a buffer taken for a terminal")
	}
	if strings.Count(got, "\x1b[K") != 4 {
		t.Errorf("every line must clear its rest: %q", got)
	}
}
