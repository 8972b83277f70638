package apiserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// What one caller of the HTTPS API may use. Every token is treated as
// possibly hostile: a tenant's script gone wrong must not starve an
// admin's rollback. The unix socket (root) has no limits.
const (
	// Requests per second and burst per token, and requests in flight.
	tenantRate, tenantBurst, tenantConcurrent = 10, 20, 8
	adminRate, adminBurst, adminConcurrent    = 50, 100, 32
	// tenantBody bounds a tenant's request body (an admin's: maxBody).
	tenantBody = 1 << 20
	// Failed logins per peer address: a steady rate and a burst, beyond
	// which the peer is answered 429 without its token being looked at.
	failedLoginRate, failedLoginBurst = 1, 10
	// maxPeers bounds the peers whose failed logins are remembered; past
	// it the table starts over (an attacker with many addresses gets a
	// fresh burst each time, no more).
	maxPeers = 10_000
	// failedLoginLogEvery bounds the log lines about one peer's failures.
	failedLoginLogEvery = 10 * time.Second
)

// tokenHash is what the server keeps of a token: the hash of its secret.
// Comparing hashes of equal length in constant time leaks neither the
// secret's bytes nor its length.
type tokenHash struct {
	hash   [sha256.Size]byte
	name   string
	tenant string
}

func hashTokens(tokens []Token) []tokenHash {
	out := make([]tokenHash, 0, len(tokens))
	for _, t := range tokens {
		out = append(out, tokenHash{hash: sha256.Sum256([]byte(t.Secret)), name: t.Name, tenant: t.Tenant})
	}
	return out
}

// match finds the token of a secret; every token is compared.
func match(tokens []tokenHash, secret string) (tokenHash, bool) {
	h := sha256.Sum256([]byte(secret))
	found, idx := 0, 0
	for i := range tokens {
		eq := subtle.ConstantTimeCompare(h[:], tokens[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return tokenHash{}, false
	}
	return tokens[idx], true
}

// callerLimits holds each token's rate limiter and in-flight slots.
type callerLimits struct {
	mu     sync.Mutex
	tokens map[string]*tokenLimit
}

type tokenLimit struct {
	rate  *rate.Limiter
	slots chan struct{}
}

// admit takes a slot for a request of id, or says why not (a 429). The
// returned func gives the slot back.
func (l *callerLimits) admit(id identity) (func(), error) {
	if id.name == "local" && id.admin() {
		return func() {}, nil
	}
	l.mu.Lock()
	if l.tokens == nil {
		l.tokens = map[string]*tokenLimit{}
	}
	t, ok := l.tokens[id.name]
	if !ok {
		r, b, c := tenantRate, tenantBurst, tenantConcurrent
		if id.admin() {
			r, b, c = adminRate, adminBurst, adminConcurrent
		}
		t = &tokenLimit{rate: rate.NewLimiter(rate.Limit(r), b), slots: make(chan struct{}, c)}
		l.tokens[id.name] = t
	}
	l.mu.Unlock()
	if !t.rate.Allow() {
		return nil, tooMany("token %q sends more than %g requests per second: slow down", id.name, float64(t.rate.Limit()))
	}
	select {
	case t.slots <- struct{}{}:
		return func() { <-t.slots }, nil
	default:
		return nil, tooMany("token %q has %d requests in flight already: wait for them", id.name, cap(t.slots))
	}
}

func tooMany(format string, args ...any) error {
	return apiError(http.StatusTooManyRequests, format, args...)
}

// failedLogins rate-limits and logs failed logins by peer address.
type failedLogins struct {
	log   *slog.Logger
	mu    sync.Mutex
	peers map[string]*peerFailures
}

type peerFailures struct {
	limit   *rate.Limiter
	count   int // failures since the last log line
	lastLog time.Time
}

func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blocked says whether the peer of r failed too often to be heard now.
func (f *failedLogins) blocked(r *http.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[peerAddr(r)]
	return ok && p.limit.Tokens() < 1
}

// failed records a failed login and logs it, at most one line per peer
// every failedLoginLogEvery with the count since the last.
func (f *failedLogins) failed(r *http.Request, why string) {
	peer := peerAddr(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers == nil || len(f.peers) >= maxPeers {
		f.peers = map[string]*peerFailures{}
	}
	p, ok := f.peers[peer]
	if !ok {
		p = &peerFailures{limit: rate.NewLimiter(failedLoginRate, failedLoginBurst)}
		f.peers[peer] = p
	}
	p.limit.Allow() // spends one; blocked looks at what is left
	p.count++
	if now := time.Now(); now.Sub(p.lastLog) >= failedLoginLogEvery {
		f.log.Warn("API: failed login", "peer", peer, "why", why, "failures", p.count, "path", r.URL.Path)
		p.count, p.lastLog = 0, now
	}
}

// retryAfter sets Retry-After on a 429.
func retryAfter(w http.ResponseWriter, status int) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(1))
	}
}
