package l7splice

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/graylane/graylane/internal/netlab"
)

// testPort is where startTestServer listens on a backend.
const testPort = 9000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// startTestServer serves on h's testPort until the test ends. A
// connection's first line picks what the server does with it:
//
//   - "sink\n": reads until EOF, answers "<bytes> <crc32c>\n" of what it
//     read after the line, and closes;
//   - "stall\n": reads nothing more until the test ends (a backend that
//     stopped reading);
//   - "lines\n": echoes every line, except "quit\n", answered with "bye\n"
//     and a close (FIN), and "reset\n", answered with a RST; at EOF it
//     closes.
//
// Read errors are recorded: errs returns them (a RST a test sent shows up
// here).
func startTestServer(t *testing.T, h *netlab.Host) (errs func() []error) {
	t.Helper()
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, testPort).String())
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  []error
		conns = map[net.Conn]bool{}
	)
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				err := serveTest(c.(*net.TCPConn), stop)
				mu.Lock()
				delete(conns, c)
				if err != nil {
					seen = append(seen, err)
				}
				mu.Unlock()
				c.Close()
			})
		}
	})
	return func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), seen...)
	}
}

func serveTest(c *net.TCPConn, stop <-chan struct{}) error {
	r := bufio.NewReaderSize(c, 256<<10)
	mode, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	switch mode {
	case "sink\n":
		h := crc32.New(castagnoli)
		n, err := io.Copy(h, r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c, "%d %08x\n", n, h.Sum32())
		return err
	case "stall\n":
		<-stop
		return nil
	case "lines\n":
		for {
			line, err := r.ReadString('\n')
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case err != nil:
				return err
			case line == "quit\n":
				_, err := c.Write([]byte("bye\n"))
				return err
			case line == "reset\n":
				c.SetLinger(0)
				return nil
			}
			if _, err := c.Write([]byte(line)); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unknown mode %q", mode)
}
