// Package fdstore speaks the service manager's file descriptor store
// protocol (systemd 254 and later; https://systemd.io/FILE_DESCRIPTOR_STORE/):
// a service sends descriptors with FDSTORE=1 on its notification socket,
// the manager keeps duplicates while the service restarts, and passes
// them to the next instance the way socket activation passes sockets
// (LISTEN_FDS, LISTEN_FDNAMES). The agent keeps its L7 connections across
// a restart with it. go-systemd's daemon package sends notifications
// without descriptors, and its activation package reads what is passed;
// this package adds the sending side.
package fdstore

import (
	"fmt"
	"os"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// maxPerMessage is the kernel's bound on descriptors in one SCM_RIGHTS
// message (SCM_MAX_FD).
const maxPerMessage = 253

// MaxName bounds a descriptor's name (FDNAME=).
const MaxName = 255

// Store is the service manager's store for this process.
type Store struct {
	socket string
	max    int
}

// FromEnv returns the store the service manager offers this process: it
// sets NOTIFY_SOCKET, and FDSTORE to the unit's FileDescriptorStoreMax=
// when that is not zero. It is nil when there is none (not under a
// service manager, a unit without a store, or systemd before 254, which
// does not say).
func FromEnv() *Store {
	sock := os.Getenv("NOTIFY_SOCKET")
	max, err := strconv.Atoi(os.Getenv("FDSTORE"))
	if sock == "" || err != nil || max <= 0 {
		return nil
	}
	return &Store{socket: sock, max: max}
}

// Max is how many descriptors the store takes in all (FDSTORE).
func (s *Store) Max() int { return s.max }

// CheckName returns an error unless name can name stored descriptors:
// 1..255 characters, ASCII, no control character and no colon (the
// separator of LISTEN_FDNAMES).
func CheckName(name string) error {
	if name == "" || len(name) > MaxName {
		return fmt.Errorf("fdstore: name %q: 1 to %d characters", name, MaxName)
	}
	for _, r := range name {
		if r < 0x20 || r >= 0x7f || r == ':' {
			return fmt.Errorf("fdstore: name %q: printable ASCII without ':'", name)
		}
	}
	return nil
}

// Add stores files under name. poll false asks the manager not to watch
// them (FDPOLL=0: descriptors epoll refuses, BPF links and memfds); a
// watched descriptor is dropped from the store when it reports a hangup
// or an error. The files stay open here too. No file, no message.
func (s *Store) Add(name string, poll bool, files ...*os.File) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	msg := "FDSTORE=1\nFDNAME=" + name + "\n"
	if !poll {
		msg += "FDPOLL=0\n"
	}
	for len(files) > 0 {
		n := min(len(files), maxPerMessage)
		fds := make([]int, n)
		for i, f := range files[:n] {
			fds[i] = int(f.Fd())
		}
		if err := s.send(msg, unix.UnixRights(fds...)); err != nil {
			return fmt.Errorf("fdstore: store %d descriptors as %q: %w", n, name, err)
		}
		files = files[n:]
	}
	return nil
}

// Remove drops every descriptor stored under name.
func (s *Store) Remove(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := s.send("FDSTOREREMOVE=1\nFDNAME="+name+"\n", nil); err != nil {
		return fmt.Errorf("fdstore: remove %q: %w", name, err)
	}
	return nil
}

// send writes one datagram to the notification socket.
func (s *Store) send(msg string, oob []byte) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// x/sys/unix reads a leading '@' as an abstract socket's name.
	return unix.Sendmsg(fd, []byte(msg), oob, &unix.SockaddrUnix{Name: s.socket}, 0)
}

// Received returns the descriptors the manager passed to this process at
// its start, each named (os.File.Name) as it was stored, and takes the
// variables that passed them out of the environment (so that children do
// not see them). Call it once, early.
func Received() []*os.File {
	return activation.Files(true)
}
