package gate

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxOutput bounds the output an exec gate keeps: its first and last
// MaxOutput/2 bytes when there is more.
const MaxOutput = 4096

// waitDelay is how long a command's output may stay open after the
// command exited or was killed (a child it left running may hold it):
// then the runner stops reading and goes on.
const waitDelay = time.Second

// Command is a command an exec gate runs.
type Command struct {
	// Argv is the program (a path) and its arguments; no shell.
	Argv []string
	// User is who runs it: a named command of the agent's allowlist runs
	// as an unprivileged user, without capabilities or a way to gain
	// privileges, under MaxProcs and MaxAddressSpace. nil: as the agent
	// runs (the admin-only argv form, exec: [...]).
	User *User
	// Timeout caps the gate's timeout (0: the gate's alone).
	Timeout time.Duration
}

// User is the unprivileged user a named command runs as.
type User struct {
	Name     string
	UID, GID uint32
}

// CleanPath is the PATH of every gate command; the rest of its
// environment is Options.Env, nothing of the agent's.
const CleanPath = "PATH=/usr/bin:/bin"

// The limits of a command run as a User, from its start (see Prlimit);
// what it starts inherits them.
const (
	// MaxProcs bounds the processes of the command's user (RLIMIT_NPROC).
	MaxProcs = 64
	// MaxAddressSpace bounds each process's virtual memory (RLIMIT_AS).
	MaxAddressSpace = 4 << 30
)

// execGate runs c, without a shell, in a clean environment, from /;
// exit status 0 passes. When the attempt ends first, the command and its
// process group are killed.
func (a *attempt) execGate(c Command, opts Options) Result {
	argv := c.Argv
	if c.User != nil {
		argv = limited(argv)
	}
	cmd := opts.Command(a.ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{CleanPath}, opts.Env...)
	cmd.Dir = "/"
	if c.User != nil {
		if err := runAs(cmd, *c.User); err != nil {
			return Result{Detail: fmt.Sprintf("will not start the command: %v", err)}
		}
	}
	out := &capped{}
	// One writer for both: exec gives the command a single pipe, so the
	// output keeps the order in which it was written.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.WaitDelay = waitDelay
	group := ownGroup(cmd)
	if err := start(cmd, c.User != nil); err != nil {
		if s, ok := a.stopped(); ok {
			return Result{Detail: s}
		}
		return Result{Detail: fmt.Sprintf("could not start the command: %v", err)}
	}
	// Kill the command, and what it started, when the attempt ends:
	// CommandContext alone kills only the command, and a command made
	// without a context is not killed at all.
	done := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-a.ctx.Done():
			kill(cmd, group)
		case <-done:
		}
	})
	err := cmd.Wait()
	close(done)
	watch.Wait()
	r := Result{Output: out.String()}
	switch {
	case err == nil:
		r.Pass, r.Detail = true, "exit status 0"
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited 0, but something it started kept the output open.
		kill(cmd, group)
		r.Pass, r.Detail = true, fmt.Sprintf("exit status 0 (a process it started kept the output open: stopped reading after %v)", waitDelay)
	default:
		if s, ok := a.stopped(); ok {
			r.Detail = s + ": killed"
			break
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.Detail = ee.Error() // "exit status 3", "signal: segmentation fault"
		} else {
			r.Detail = fmt.Sprintf("could not run the command: %v", err)
		}
	}
	return r
}

// capped keeps the first and the last MaxOutput/2 bytes written to it and
// counts the rest. It is safe for concurrent use.
type capped struct {
	mu   sync.Mutex
	head []byte
	tail []byte // the bytes after head; trimmed to its last MaxOutput/2 when long
	n    int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	written := len(p)
	c.n += written
	const half = MaxOutput / 2
	if room := half - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	c.tail = append(c.tail, p...)
	if len(c.tail) > 2*half {
		c.tail = append(c.tail[:0], c.tail[len(c.tail)-half:]...)
	}
	return written, nil
}

// String returns the output, with a marker where bytes were cut.
func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n <= MaxOutput {
		return string(c.head) + string(c.tail)
	}
	const half = MaxOutput / 2
	head, tail := c.head, c.tail[len(c.tail)-half:]
	// Cut on character boundaries.
	for len(head) > 0 && !utf8.FullRune(head[lastRuneStart(head):]) {
		head = head[:lastRuneStart(head)]
	}
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	cut := c.n - len(head) - len(tail)
	return fmt.Sprintf("%s\n[... %d bytes of output cut ...]\n%s", head, cut, tail)
}

func lastRuneStart(b []byte) int {
	i := len(b) - 1
	for i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	return i
}
