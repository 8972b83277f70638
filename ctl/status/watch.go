package status

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// Bounds of --interval: faster than the agent's one-second window would
// show the same numbers again; slower is not watching.
const (
	minInterval = 500 * time.Millisecond
	maxInterval = time.Hour
)

// watch is the status's --watch mode.
type watch struct {
	on       bool
	interval time.Duration
	count    int
}

func (w *watch) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&w.on, "watch", "w", false, "refresh until interrupted (in place on a terminal)")
	cmd.Flags().DurationVar(&w.interval, "interval", 2*time.Second, "with --watch: time between refreshes")
	cmd.Flags().IntVar(&w.count, "count", 0, "with --watch: stop after this many refreshes (0: until interrupted)")
}

func (w *watch) check(cmd *cobra.Command) error {
	if !w.on {
		for _, f := range []string{"interval", "count"} {
			if cmd.Flags().Changed(f) {
				return cli.Usagef("--%s: only with --watch", f)
			}
		}
		return nil
	}
	if w.interval < minInterval || w.interval > maxInterval {
		return cli.Usagef("--interval %s: give %s to %s", w.interval, minInterval, maxInterval)
	}
	if w.count < 0 {
		return cli.Usagef("--count %d: give 0 (until interrupted) or more", w.count)
	}
	return nil
}

// run refreshes the status until ctx ends or count refreshes are shown.
// The first refresh's error ends the watch (a wrong service name should
// not scroll by); later ones are shown and the watch goes on, so an
// agent's restart reads as a gap, not an exit.
func (w *watch) run(ctx context.Context, env *cli.Env, get func() (api.Status, error)) error {
	inPlace := env.Format == printer.Table && isTerminal(env.Out)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for n := 1; ; n++ {
		st, err := get()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && n == 1 {
			return env.Explain(err)
		}
		var frame bytes.Buffer
		switch {
		case err != nil && env.Format != printer.Table:
			// Keep the output a stream of documents.
			fmt.Fprintf(env.Err, "? %v\n", env.Explain(err))
		case err != nil:
			fmt.Fprintf(&frame, "? %v\n", env.Explain(err))
		default:
			if err := printer.Print(&frame, env.Format, st, func(t *printer.Tab) { table(t, st) }); err != nil {
				return err
			}
		}
		if frame.Len() > 0 {
			if err := w.show(env.Out, &frame, env.Format, inPlace, time.Now()); err != nil {
				return err
			}
		}
		if w.count > 0 && n >= w.count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// show writes one refresh: on a terminal over the previous one (cursor
// home, each line cleared to its end, the rest of the screen cleared: no
// flicker); otherwise a table after a line with its time, JSON documents
// one after the other, YAML documents after their separator.
func (w *watch) show(out io.Writer, frame *bytes.Buffer, format printer.Format, inPlace bool, now time.Time) error {
	var b strings.Builder
	switch {
	case format == printer.JSON:
		b.Write(frame.Bytes())
	case format == printer.YAML:
		b.WriteString("---\n")
		b.Write(frame.Bytes())
	case inPlace:
		b.WriteString("\x1b[H")
		fmt.Fprintf(&b, "every %s · %s · Ctrl-C ends\x1b[K\n\x1b[K\n", w.interval, now.Format("15:04:05"))
		for line := range strings.Lines(frame.String()) {
			b.WriteString(strings.TrimSuffix(line, "\n") + "\x1b[K\n")
		}
		b.WriteString("\x1b[J")
	default:
		fmt.Fprintf(&b, "--- %s\n", now.UTC().Format(time.RFC3339))
		b.Write(frame.Bytes())
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// isTerminal tells whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
