package netlab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// BenchHTTPPort is where StartBenchHTTP serves.
const BenchHTTPPort = 8094

// MaxBenchBytes bounds what "/bytes/N" of StartBenchHTTP serves.
const MaxBenchBytes = 8 << 30

// StartBenchHTTP serves HTTP/1.1 with keep-alive on BenchHTTPPort of
// h.Addr4 until ctx ends (Lab.Close stops it too): "/" answers
// "<h.Name>\n", which host answered, and "/bytes/N" answers N zero bytes
// (at most MaxBenchBytes) with a Content-Length, for bulk transfers
// through whatever sits between client and backend.
func (h *Host) StartBenchHTTP(ctx context.Context) error {
	name := []byte(h.Name + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(name)
	})
	mux.HandleFunc("/bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > MaxBenchBytes {
			http.Error(w, fmt.Sprintf("want a byte count 0..%d", int64(MaxBenchBytes)), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 256<<10)
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, BenchHTTPPort).String())
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", h.Name, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	h.addServers(func() { srv.Close() })
	go func() { <-ctx.Done(); srv.Close() }()
	return nil
}

// Dial connects to raddr from a thread already inside a host's namespace;
// see Host.OnThread.
type Dial func(ctx context.Context, raddr netip.AddrPort) (net.Conn, error)

// OnThread runs fn on the calling goroutine's thread switched into h's
// namespace, for a load generator's worker that opens many connections:
// the thread is switched once, not per connection as with DialTCP, and
// the sockets dial makes are checked to be in h's namespace. fn must not
// start goroutines expecting them to be in the namespace. The thread is
// switched back afterwards (see Host.Do).
func (h *Host) OnThread(fn func(dial Dial) error) error {
	d := h.dialer("tcp", netip.Addr{})
	return switched(h.setns, func() error {
		return fn(func(ctx context.Context, raddr netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", raddr.String())
		})
	})
}
