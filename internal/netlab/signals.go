package netlab

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
)

// CloseOnSignal makes SIGINT and SIGTERM close l before the process dies:
// on the first such signal it calls l.Close, stops listening and raises the
// signal again, so the process then ends as it would have without this
// hook (or other handlers get it). disarm undoes the hook; call it once the
// lab is closed normally. A signal that arrives during New cannot be
// handled this way; the next New (or `graylane-lab cleanup`) removes what
// such a run left behind.
func (l *Lab) CloseOnSignal() (disarm func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			l.Close()
			signal.Stop(ch)
			if s, ok := sig.(syscall.Signal); ok {
				syscall.Kill(os.Getpid(), s)
			}
		case <-done:
			signal.Stop(ch)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// NewT is New for tests: it calls testenv.RequirePrivileges (skipping, or
// failing in CI, without privileges), builds the lab within a minute, fails
// t on error and closes the lab in t.Cleanup.
func NewT(t testing.TB, cfg Config) *Lab {
	t.Helper()
	testenv.RequirePrivileges(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("netlab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close %s: %v", l.Name, err)
		}
	})
	return l
}
