package gate

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

func execGate(timeout time.Duration, argv ...string) release.Gate {
	return release.Gate{Exec: argv, Timeout: timeout}
}

func TestExec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		argv   []string
		pass   bool
		detail string
		output string
	}{
		{[]string{"true"}, true, "exit status 0", ""},
		{[]string{"false"}, false, "exit status 1", ""},
		{[]string{"sh", "-c", "echo hi; exit 3"}, false, "exit status 3", "hi\n"},
		{[]string{"sh", "-c", "echo out; echo err >&2; echo out2"}, true, "exit status 0", "out\nerr\nout2\n"},
		{[]string{"sh", "-c", "kill -TERM $$"}, false, "signal: terminated", ""},
		{[]string{"echo", "no", "shell;", "$HOME"}, true, "exit status 0", "no shell; $HOME\n"},
		{[]string{"/nonexistent/gate-command"}, false, "could not start the command: fork/exec /nonexistent/gate-command: no such file or directory", ""},
		{[]string{"gate-command-not-on-path"}, false, `could not start the command: exec: "gate-command-not-on-path": executable file not found in $PATH`, ""},
	} {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			t.Parallel()
			r := Run(context.Background(), execGate(5*time.Second, tc.argv...), nil, fast)
			if r.Pass != tc.pass || r.Detail != tc.detail || r.Output != tc.output || r.Attempts != 1 {
				t.Errorf("got %+v\nwant pass %v, detail %q, output %q", r, tc.pass, tc.detail, tc.output)
			}
		})
	}
}

// TestExecTimeout: a command past the gate's timeout is killed, with the
// processes it started, and the gate says it timed out.
func TestExecTimeout(t *testing.T) {
	t.Parallel()
	for _, argv := range [][]string{
		{"sleep", "5"},
		// The shell waits for sleep, which holds the output: killing only
		// the shell would leave us waiting for WaitDelay.
		{"sh", "-c", "echo started; sleep 5; echo never"},
	} {
		t.Run(strings.Join(argv, " "), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := Run(context.Background(), execGate(200*time.Millisecond, argv...), nil, fast)
			took := time.Since(start)
			if r.Pass || r.Detail != "timed out after 200ms (the gate's timeout): killed" || took > waitDelay/2 {
				t.Errorf("got %+v after %v", r, took)
			}
			if argv[0] == "sh" && r.Output != "started\n" {
				t.Errorf("the output before the timeout is kept: %q", r.Output)
			}
		})
	}
}

// TestExecCommand: commands come from Options.Command, whether or not it
// gives them the context; either way a timeout kills them.
func TestExecCommand(t *testing.T) {
	t.Parallel()
	withEnv := func(ctx context.Context, name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "GATE_TEST=from-the-caller")
		return cmd
	}
	// The environment is the runner's, the caller's dropped: a clean PATH
	// and Options.Env; the command runs from /.
	opts := Options{Command: withEnv, Env: []string{"GRAYLANE_SERVICE=web"}}
	r := Run(context.Background(), execGate(5*time.Second, "/usr/bin/env"), nil, opts)
	if want := CleanPath + "\nGRAYLANE_SERVICE=web\n"; !r.Pass || r.Output != want {
		t.Errorf("Options.Command: %+v, want output %q", r, want)
	}
	r = Run(context.Background(), execGate(5*time.Second, "/bin/pwd"), nil, opts)
	if !r.Pass || r.Output != "/\n" {
		t.Errorf("the working directory: %+v", r)
	}
	for name, command := range map[string]func(context.Context, string, ...string) *exec.Cmd{
		"without a context": func(_ context.Context, name string, args ...string) *exec.Cmd { return exec.Command(name, args...) },
		"in its own session": func(ctx context.Context, name string, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			return cmd
		},
	} {
		start := time.Now()
		r := Run(context.Background(), execGate(200*time.Millisecond, "sh", "-c", "sleep 5"), nil, Options{Command: command})
		if took := time.Since(start); r.Pass || !strings.HasPrefix(r.Detail, "timed out") || took > waitDelay/2 {
			t.Errorf("%s: %+v after %v", name, r, took)
		}
	}
}

// TestExecHeldOutput: a command that exits but leaves a process holding
// its output does not hang the gate; a leftover in its group is killed.
func TestExecHeldOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script string
		killed bool
	}{
		{"in the group", "sleep 5 & echo $!", true},
		{"in its own session", "setsid sleep 5 & echo $!", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.name == "in its own session" {
				if _, err := exec.LookPath("setsid"); err != nil {
					t.Skip("no setsid command here: it starts the process that escapes the group")
				}
			}
			start := time.Now()
			r := Run(context.Background(), execGate(5*time.Second, "sh", "-c", tc.script), nil, fast)
			took := time.Since(start)
			pid, err := strconv.Atoi(strings.TrimSpace(r.Output))
			if err != nil {
				t.Fatalf("no pid in the output: %+v", r)
			}
			if !tc.killed {
				t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			}
			want := fmt.Sprintf("exit status 0 (a process it started kept the output open: stopped reading after %v)", waitDelay)
			if !r.Pass || r.Detail != want || took < waitDelay || took > waitDelay+time.Second {
				t.Errorf("got %+v after %v", r, took)
			}
			if tc.killed && !gone(pid, time.Second) {
				t.Errorf("the leftover sleep (pid %d) still runs", pid)
			}
		})
	}
}

// gone waits up to d for process pid to end (or be a zombie).
func gone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// pid (comm) STATE ...
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
			return true
		}
	}
	return false
}

// TestExecOutputCap: long output keeps its start and end and says how
// much was cut.
func TestExecOutputCap(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), execGate(5*time.Second, "sh", "-c", "echo BEGIN; head -c 10000 /dev/zero | tr '\\0' x; echo; echo END >&2"), nil, fast)
	total := len("BEGIN\n") + 10000 + len("\nEND\n")
	marker := fmt.Sprintf("\n[... %d bytes of output cut ...]\n", total-MaxOutput)
	if !r.Pass || !strings.HasPrefix(r.Output, "BEGIN\nxxx") || !strings.HasSuffix(r.Output, "xxx\nEND\n") ||
		!strings.Contains(r.Output, marker) || len(r.Output) != MaxOutput+len(marker) {
		t.Errorf("pass %v, %d bytes: %.40q ... %.60q", r.Pass, len(r.Output), r.Output, r.Output[max(0, len(r.Output)-60):])
	}
}

func TestCapped(t *testing.T) {
	t.Parallel()
	write := func(parts ...string) string {
		var c capped
		for _, p := range parts {
			if n, err := c.Write([]byte(p)); n != len(p) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
			}
		}
		return c.String()
	}
	exact := strings.Repeat("a", MaxOutput)
	if got := write(exact[:100], exact[100:3000], exact[3000:]); got != exact {
		t.Errorf("exactly MaxOutput bytes come back whole: %d bytes", len(got))
	}
	if got := write("x"); got != "x" {
		t.Errorf("a short output: %q", got)
	}
	// Two-byte characters placed so that both cuts fall inside one.
	long := "a" + strings.Repeat("é", MaxOutput) + "b"
	got := write(long[:10], long[10:5000], long[5000:])
	if !strings.HasPrefix(got, "a"+strings.Repeat("é", MaxOutput/4-1)+"\n[... ") || !strings.HasSuffix(got, " cut ...]\n"+strings.Repeat("é", MaxOutput/4-1)+"b") {
		t.Errorf("cut inside a character: %.30q ... %.30q", got, got[len(got)-30:])
	}
	if !strings.Contains(got, fmt.Sprintf("[... %d bytes of output cut ...]", len(long)-2*(MaxOutput/2-1))) {
		t.Errorf("the count of cut bytes is wrong: %q", got[MaxOutput/2-10:MaxOutput/2+50])
	}
}
