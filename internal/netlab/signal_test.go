package netlab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
)

const childEnv = "NETLAB_TEST_CHILD"

// TestMain lets a test re-run this binary as a child that builds a lab,
// prints its name and waits to be signalled.
func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, Config{Prefix: "glsig", Stable: 1, Canary: -1})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if mode == "hook" {
		defer l.CloseOnSignal()()
	}
	fmt.Println(l.Name)
	time.Sleep(30 * time.Second) // bounded: the parent signals long before
	l.Close()
	return 0
}

// startChild runs the child and returns it with the name of its lab.
func startChild(t *testing.T, mode string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	line = strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(line, "glsig") {
		t.Fatalf("child: %q, %v", line, err)
	}
	if len(labNamespaces(t, line)) != 4 {
		t.Fatalf("child lab %s has namespaces %v", line, labNamespaces(t, line))
	}
	return cmd, line
}

func TestCloseOnSignal(t *testing.T) {
	testenv.RequirePrivileges(t)
	cmd, lab := startChild(t, "hook")
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("child ended with %v, want death by SIGTERM", err)
	}
	if got := labNamespaces(t, lab); len(got) > 0 {
		t.Errorf("namespaces left after SIGTERM: %v", got)
	}
}

func TestKilledOwnerIsCleanedUp(t *testing.T) {
	testenv.RequirePrivileges(t)
	cmd, lab := startChild(t, "nohook")
	cmd.Process.Kill()
	cmd.Wait()
	if got := labNamespaces(t, lab); len(got) != 4 {
		t.Fatalf("SIGKILLed child left %v, want its 4 namespaces", got)
	}
	NewT(t, Config{Prefix: "glsig", Stable: 1, Canary: -1})
	if got := labNamespaces(t, lab); len(got) > 0 {
		t.Errorf("New did not remove the dead lab: %v", got)
	}
}
