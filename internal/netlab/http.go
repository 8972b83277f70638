package netlab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPPort is where StartHTTP serves: "/" answers the host's name,
// "/healthz" answers {"db":{"status":"UP"},"name":…}, "/doc/N" answers
// {"doc":N,"version":1} on every host alike (a shadow comparison's
// traffic; see Faults.SetDiff).
const HTTPPort = 8093

// Faults make a host's HTTP server misbehave on purpose, while it serves:
// every SlowEvery-th answer to "/" takes SlowDelay, every FailEvery-th is
// a 500 (0: never). Counting is per server, so the shares are exact.
type Faults struct {
	slowEvery, failEvery atomic.Int64
	slowDelay            atomic.Int64
	diffEvery            atomic.Int64
}

// SetDiff makes "/doc/N" answer version 2 for every N divisible by every
// (0: never): a canary that changed one JSON field on 1/every of paths.
func (f *Faults) SetDiff(every int64) { f.diffEvery.Store(every) }

// Set changes the faults: one slow answer in slowEvery taking delay, one
// 500 in failEvery (0: none of that kind).
func (f *Faults) Set(slowEvery, failEvery int64, delay time.Duration) {
	f.slowEvery.Store(slowEvery)
	f.failEvery.Store(failEvery)
	f.slowDelay.Store(int64(delay))
}

// StartHTTP serves HTTPPort on h.Addr4 until ctx ends; faults (nil: none)
// apply to "/".
func (h *Host) StartHTTP(ctx context.Context, faults *Faults) error {
	if faults == nil {
		faults = &Faults{}
	}
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"db":{"status":"UP"},"name":%q}`+"\n", h.Name)
	})
	mux.HandleFunc("/doc/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil {
			http.Error(w, "not a document number", http.StatusBadRequest)
			return
		}
		version := 1
		if k := faults.diffEvery.Load(); k > 0 && n%k == 0 {
			version = 2
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"doc":%d,"version":%d}`+"\n", n, version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if k := faults.slowEvery.Load(); k > 0 && i%k == 0 {
			time.Sleep(time.Duration(faults.slowDelay.Load()))
		}
		if k := faults.failEvery.Load(); k > 0 && i%k == 1 {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, h.Name)
	})
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, HTTPPort).String())
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", h.Name, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	h.addServers(func() { srv.Close() })
	go func() { <-ctx.Done(); srv.Close() }()
	return nil
}

// StartHTTP serves HTTPPort on every backend of the lab; the canary hosts
// obey canary (nil: no faults).
func (l *Lab) StartHTTP(ctx context.Context, canary *Faults) error {
	for _, h := range l.Stable {
		if err := h.StartHTTP(ctx, nil); err != nil {
			return err
		}
	}
	for _, h := range l.Canary {
		if err := h.StartHTTP(ctx, canary); err != nil {
			return err
		}
	}
	return nil
}

// HTTPLoad sends GET / from a host to an address, one new connection per
// request, at about Rate requests a second, until Stop (bounded by the
// context it was started with and by 10 minutes). It counts what the
// client saw.
type HTTPLoad struct {
	OK, Failed, Status5xx atomic.Int64
	stop                  context.CancelFunc
	done                  chan struct{}
}

// StartHTTPLoad starts a load from h to target.
func (h *Host) StartHTTPLoad(ctx context.Context, target netip.AddrPort, rate int) *HTTPLoad {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	l := &HTTPLoad{stop: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return h.DialTCP(ctx, netip.Addr{}, netip.MustParseAddrPort(addr))
		},
	}}
	url := "http://" + target.String() + "/"
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
		defer tick.Stop()
		sem := make(chan struct{}, 64) // slow backends do not pile up requests
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				resp, err := client.Get(url)
				if err != nil {
					l.Failed.Add(1)
					return
				}
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					l.Status5xx.Add(1)
				}
				l.OK.Add(1)
			})
		}
	}()
	return l
}

// Stop ends the load and waits for its requests.
func (l *HTTPLoad) Stop() { l.stop(); <-l.done }
