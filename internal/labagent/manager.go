package labagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Manager plays systemd's part for lab agents started with it
// (Options.Manager): the notification socket (NOTIFY_SOCKET) and the file
// descriptor store (FDSTORE=1, FDNAME, FDSTOREREMOVE; FDSTORE in the
// environment), whose descriptors it passes to the next agent it starts
// as systemd does (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, descriptors
// from 3). The lab machine has no systemd as PID 1, so the protocol is
// exercised against this; its documented rules followed here: stored
// descriptors stay stored across starts until removed by name,
// duplicates in a message are all kept, names travel in order.
type Manager struct {
	conn *net.UnixConn
	path string
	max  int

	mu     sync.Mutex
	stored []storedFile
	errs   []error // malformed messages
	done   chan struct{}
}

type storedFile struct {
	name string
	f    *os.File
}

// NewManager listens on a notification socket in dir, with a store of at
// most max descriptors.
func NewManager(dir string, max int) (*Manager, error) {
	path := filepath.Join(dir, "notify.sock")
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("labagent: notification socket: %w", err)
	}
	m := &Manager{conn: conn, path: path, max: max, done: make(chan struct{})}
	go m.serve()
	return m, nil
}

// serve reads notifications until Close.
func (m *Manager) serve() {
	defer close(m.done)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(253*4))
	for {
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		files, err := receivedFiles(oob[:oobn])
		m.mu.Lock()
		if err == nil {
			err = m.handle(string(buf[:n]), files)
		}
		if err != nil {
			m.errs = append(m.errs, err)
			for _, f := range files {
				f.Close()
			}
		}
		m.mu.Unlock()
	}
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, msg := range msgs {
		fds, err := unix.ParseUnixRights(&msg)
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "stored"))
		}
	}
	return files, nil
}

// handle applies one notification. m.mu is held.
func (m *Manager) handle(msg string, files []*os.File) error {
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(msg), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("notification line %q: no '='", line)
		}
		vars[k] = v
	}
	name := vars["FDNAME"]
	switch {
	case vars["FDSTOREREMOVE"] == "1":
		m.stored = slices.DeleteFunc(m.stored, func(s storedFile) bool {
			if s.name == name {
				s.f.Close()
			}
			return s.name == name
		})
	case vars["FDSTORE"] == "1":
		if len(m.stored)+len(files) > m.max {
			return fmt.Errorf("store full: %d + %d descriptors named %q, max %d", len(m.stored), len(files), name, m.max)
		}
		for _, f := range files {
			m.stored = append(m.stored, storedFile{name, f})
		}
	case len(files) > 0:
		return fmt.Errorf("%d descriptors without FDSTORE=1", len(files))
	}
	return nil
}

// Stored counts the stored descriptors by name.
func (m *Manager) Stored() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, s := range m.stored {
		out[s.name]++
	}
	return out
}

// Err returns the malformed notifications received so far.
func (m *Manager) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(m.errs...)
}

// command makes cmd (ip netns exec ... bin args) start under the
// manager: bin is run through sh so that LISTEN_PID can be the agent's
// own pid, which only exists after the fork.
func (m *Manager) command(cmd *exec.Cmd, bin string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.Index(cmd.Args, bin)
	args := append([]string{"sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`}, cmd.Args[i:]...)
	cmd.Args = append(cmd.Args[:i:i], args...)
	env := append(cmd.Environ(), "NOTIFY_SOCKET="+m.path, "FDSTORE="+strconv.Itoa(m.max))
	if len(m.stored) > 0 {
		names := make([]string, len(m.stored))
		cmd.ExtraFiles = nil
		for j, s := range m.stored {
			names[j] = s.name
			cmd.ExtraFiles = append(cmd.ExtraFiles, s.f)
		}
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(m.stored)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	cmd.Env = env
}

// Close stops listening and closes every stored descriptor.
func (m *Manager) Close() {
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stored {
		s.f.Close()
	}
	m.stored = nil
	os.Remove(m.path)
}
