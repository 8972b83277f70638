package stitch

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStitchReset: Reset tells both peers of a stitched connection that
// it ended, at once, while neither sends anything: the client's blocked
// read and the backend's fail with a reset. Once right after the stitch
// (the acknowledgements are the sockets' state at the stitch) and once
// after 64 KiB more each way through it (those the program recorded).
func TestStitchReset(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	backendErr := make(chan error, 4)
	backend := serve(t, s.lab.Stable[0], 7091, func(c net.Conn) {
		_, err := io.Copy(c, c)
		if err == nil {
			err = io.EOF
		}
		backendErr <- err
	})
	for _, after := range []int{0, 64 << 10} {
		p := s.connect(ctx, t, backend, []byte("hello\n"), len("hello\n"))
		st, _, _ := s.stitch(t, p)
		if after > 0 {
			msg := append([]byte(strings.Repeat("x", after-1)), '\n')
			if _, err := p.client.Write(msg); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReaderSize(p.client, after).ReadString('\n'); err != nil || len(line) != after {
				t.Fatalf("echo through the stitch: %d bytes, %v", len(line), err)
			}
		}
		if err := s.k.Reset(st); err != nil {
			t.Fatal(err)
		}
		_ = p.client.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := p.client.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("after %d bytes: the client's read after Reset: %v, want a reset", after, err)
		}
		select {
		case err := <-backendErr:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after %d bytes: the backend's read after Reset: %v, want a reset", after, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("after %d bytes: the backend's read still blocked 3 s after Reset", after)
		}
		if err := s.k.Remove(st); err != nil {
			t.Fatal(err)
		}
	}
}
