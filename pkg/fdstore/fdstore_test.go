package fdstore

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAddRemove: Add sends FDSTORE=1 with the name and the descriptors
// (FDPOLL=0 when asked), in messages of at most 253; Remove sends
// FDSTOREREMOVE=1; bad names are refused before anything is sent.
func TestAddRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("FDSTORE", "1000")
	s := FromEnv()
	if s == nil || s.Max() != 1000 {
		t.Fatalf("FromEnv: %v", s)
	}
	var files []*os.File
	for range 300 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	if err := s.Add("conn-1", false, files...); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{253, 47} {
		msg, fds := receive(t, conn)
		if msg != "FDSTORE=1\nFDNAME=conn-1\nFDPOLL=0\n" || len(fds) != want {
			t.Errorf("message %q with %d descriptors, want %d", msg, len(fds), want)
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err := s.Remove("conn-1"); err != nil {
		t.Fatal(err)
	}
	if msg, fds := receive(t, conn); msg != "FDSTOREREMOVE=1\nFDNAME=conn-1\n" || len(fds) != 0 {
		t.Errorf("remove: %q, %d descriptors", msg, len(fds))
	}
	for _, bad := range []string{"", "a:b", "tab\there", strings.Repeat("x", 256), "é"} {
		if err := s.Add(bad, true, files[0]); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

func TestFromEnvNeedsAStore(t *testing.T) {
	for _, env := range [][2]string{{"", "10"}, {"/run/x", ""}, {"/run/x", "0"}, {"/run/x", "many"}} {
		t.Setenv("NOTIFY_SOCKET", env[0])
		t.Setenv("FDSTORE", env[1])
		if FromEnv() != nil {
			t.Errorf("NOTIFY_SOCKET=%q FDSTORE=%q: a store", env[0], env[1])
		}
	}
}

func receive(t *testing.T, conn *net.UnixConn) (string, []int) {
	t.Helper()
	buf, oob := make([]byte, 512), make([]byte, unix.CmsgSpace(253*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, got...)
	}
	return string(buf[:n]), fds
}
