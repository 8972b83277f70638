package stitch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/httphead"
	"github.com/graylane/graylane/pkg/match"
	"github.com/graylane/graylane/pkg/service"
)

// The tests of rules.h's matcher (bpf/stitch/rulecheck.c runs it on a
// frame's TCP payload): a table of cases, each also checked against
// refRulesMatch, the matcher's semantics in Go; refRulesMatch checked
// against pkg/httphead and pkg/match on random requests; and random
// requests, valid, mutated and cut short, through both.
//
//	flock /tmp/graylane-lab.lock go test -run 'TestRules' -bench RulesMatch ./pkg/stitch/

// rules_match's results and limits (rules.h).
const (
	matchNone       = -1
	matchIncomplete = -2
	matchMalformed  = -3

	firstMax     = 2048
	rulesMax     = 8
	ruleNameMax  = 32
	ruleValueMax = 64
)

// Rule kinds (enum rule_kind).
const (
	ruleExact   = 0
	rulePrefix  = 1
	rulePresent = 2
)

type testRule struct {
	name, value string
	kind        uint8
}

func exactRule(name, value string) testRule  { return testRule{name, value, ruleExact} }
func prefixRule(name, value string) testRule { return testRule{name, value, rulePrefix} }
func presentRule(name string) testRule       { return testRule{name: name, kind: rulePresent} }

// ruleChecker is rulecheck.c loaded.
type ruleChecker struct {
	objs stitchbpf.RuleCheckObjects
}

func newRuleChecker(tb testing.TB) *ruleChecker {
	tb.Helper()
	testenv.RequirePrivileges(tb)
	spec, err := stitchbpf.LoadRuleCheck()
	if err != nil {
		tb.Fatal(err)
	}
	c := &ruleChecker{}
	opts := ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
	start := time.Now()
	if err := spec.LoadAndAssign(&c.objs, &opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("loading rulecheck: %v; the verifier's log ends:\n%s", err, strings.Join(ve.Log[max(0, len(ve.Log)-40):], "\n"))
		}
		tb.Fatalf("loading rulecheck: %v", err)
	}
	tb.Cleanup(func() { _ = c.objs.Close() })
	tb.Logf("rule_check verified in %v: %s", time.Since(start).Round(time.Millisecond),
		strings.TrimSpace(c.objs.RuleCheck.VerifierLog))
	return c
}

// setRules stores rules as rule_sets[0]; at most rulesMax, each cut to
// the limits.
func (c *ruleChecker) setRules(tb testing.TB, rules []testRule) {
	tb.Helper()
	var rs stitchbpf.RuleCheckRules
	rs.Count = uint32(len(rules))
	for i, r := range rules {
		rr := &rs.Rule[i]
		rr.NameLen = uint8(copy(rr.Name[:], r.name))
		rr.ValueLen = uint8(copy(rr.Value[:], r.value))
		rr.Kind = r.kind
	}
	if err := c.objs.RuleSets.Put(uint32(0), &rs); err != nil {
		tb.Fatal(err)
	}
}

// match runs rule_check on a frame carrying req and returns its result.
func (c *ruleChecker) match(tb testing.TB, req []byte) int {
	tb.Helper()
	if err := c.objs.RuleResult.Put(uint32(0), int32(99)); err != nil {
		tb.Fatal(err)
	}
	ret, _, err := c.objs.RuleCheck.Test(ruleFrame(req))
	if err != nil || ret != tcActOK {
		tb.Fatalf("rule_check: %d, %v", int32(ret), err)
	}
	var res int32
	if err := c.objs.RuleResult.Lookup(uint32(0), &res); err != nil {
		tb.Fatal(err)
	}
	if res == 99 {
		tb.Fatal("rule_check stored no result")
	}
	return int(res)
}

// ruleFrame is an Ethernet frame carrying IPv4 and TCP (a 20-byte header)
// with payload. Checksums are not computed: rule_check does not read them.
func ruleFrame(payload []byte) []byte {
	f := make([]byte, 14+20+20, 14+20+20+len(payload))
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	ip[8], ip[9] = 64, 6
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 100})
	tcp := f[34:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12], tcp[13] = 5<<4, 0x18
	return append(f, payload...)
}

type rulesCase struct {
	name  string
	req   string
	rules []testRule
	want  int
}

// longHead is a head of n bytes (n >= 100) whose last header is
// X-Canary: v2.
func longHead(n int) string {
	const tail = "X-Canary: v2\r\n\r\n"
	var b strings.Builder
	b.WriteString("GET /a HTTP/1.1\r\nHost: a.example\r\n")
	for i := 0; b.Len()+55+9+len(tail) <= n; i++ {
		fmt.Fprintf(&b, "X-Filler-%02d: %s\r\n", i, strings.Repeat("f", 40)) // 55 bytes
	}
	fmt.Fprintf(&b, "X-Pad: %s\r\n", strings.Repeat("p", n-b.Len()-9-len(tail)))
	b.WriteString(tail)
	return b.String()
}

func rulesCases() []rulesCase {
	const get = "GET /orders?id=1 HTTP/1.1\r\nHost: shop.example\r\n"
	canary := []testRule{exactRule("x-canary", "v2")}
	long := strings.Repeat("v", ruleValueMax+16)
	return []rulesCase{
		{"exact hit", get + "X-Canary: v2\r\n\r\n", canary, 0},
		{"exact miss by case", get + "X-Canary: V2\r\n\r\n", canary, matchNone},
		{"exact miss, value longer", get + "X-Canary: v22\r\n\r\n", canary, matchNone},
		{"exact miss, value shorter", get + "X-Canary: v\r\n\r\n", canary, matchNone},
		{"exact miss, inner blank", get + "X-Canary: v2 x\r\n\r\n", canary, matchNone},
		{"no such header", get + "Accept: */*\r\n\r\n", canary, matchNone},
		{"name longer", get + "X-Canary-Id: v2\r\n\r\n", canary, matchNone},
		{"name shorter", get + "X-Canar: v2\r\n\r\n", canary, matchNone},
		{"prefix hit", get + "X-IMSI: 460011234567890\r\n\r\n", []testRule{prefixRule("x-imsi", "46001")}, 0},
		{"prefix hit, whole value", get + "X-IMSI: 46001\r\n\r\n", []testRule{prefixRule("x-imsi", "46001")}, 0},
		{"prefix miss", get + "X-IMSI: 460021234567890\r\n\r\n", []testRule{prefixRule("x-imsi", "46001")}, matchNone},
		{"prefix miss, value shorter", get + "X-IMSI: 4600\r\n\r\n", []testRule{prefixRule("x-imsi", "46001")}, matchNone},
		{"present, empty value", get + "X-Debug:\r\n\r\n", []testRule{presentRule("x-debug")}, 0},
		{"present, blank value", get + "X-Debug: \t \r\n\r\n", []testRule{presentRule("x-debug")}, 0},
		{"present, absent", get + "X-Debugs: 1\r\n\r\n", []testRule{presentRule("x-debug")}, matchNone},
		{"name case-insensitive", get + "x-CANARY: v2\r\n\r\n", canary, 0},
		{"rule order: both match, lower index", get + "X-IMSI: 46001\r\nX-Canary: v2\r\n\r\n",
			[]testRule{exactRule("x-canary", "v2"), prefixRule("x-imsi", "460")}, 0},
		{"rule order: the first rule wins, not the first line", get + "X-Canary: v2\r\nX-IMSI: 46001\r\n\r\n",
			[]testRule{presentRule("x-none"), prefixRule("x-imsi", "460"), exactRule("x-canary", "v2")}, 1},
		{"duplicate header, second value matches", get + "X-Canary: v1\r\nX-Canary: v2\r\n\r\n", canary, 0},
		{"duplicate header, neither matches", get + "X-Canary: v1\r\nX-Canary: v3\r\n\r\n", canary, matchNone},
		{"OWS trimmed", get + "X-Canary:   v2  \r\n\r\n", canary, 0},
		{"OWS tabs trimmed", get + "X-Canary:\tv2\t \r\n\r\n", canary, 0},
		{"no OWS", get + "X-Canary:v2\r\n\r\n", canary, 0},
		{"comma list is one value", get + "X-Canary: v2, v3\r\n\r\n", canary, matchNone},
		{"no headers", "GET / HTTP/1.0\r\n\r\n", canary, matchNone},
		{"body after the head ignored", get + "X-Canary: v1\r\n\r\nX-Canary: v2\r\n\r\n", canary, matchNone},
		{"obs-text in value", get + "X-Canary: v2\xff\r\nX-Other: \x80\r\n\r\n", []testRule{exactRule("x-canary", "v2\xff")}, 0},
		{"incomplete: no blank line", get + "X-Canary: v2\r\n", canary, matchIncomplete},
		{"incomplete: cut in the value", get + "X-Canary: v", canary, matchIncomplete},
		{"incomplete: cut in the last CRLF", get + "X-Canary: v2\r\n\r", canary, matchIncomplete},
		{"incomplete: cut in the request line", "GET /orders HTTP/1.", canary, matchIncomplete},
		{"incomplete: empty", "", canary, matchIncomplete},
		{"malformed: no colon", get + "X-Canary v2\r\n\r\n", canary, matchMalformed},
		{"malformed: name without a colon", get + "X-Canary\r\n\r\n", canary, matchMalformed},
		{"malformed: blank before the colon", get + "X-Canary : v2\r\n\r\n", canary, matchMalformed},
		{"malformed: empty name", get + ": v2\r\n\r\n", canary, matchMalformed},
		{"malformed: control char in name", get + "X-Can\x01ary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: control char in value", get + "X-Canary: v\x002\r\n\r\n", canary, matchMalformed},
		{"malformed: bare LF in headers", get + "X-Canary: v2\n\r\n", canary, matchMalformed},
		{"malformed: bare LF request line", "GET / HTTP/1.1\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: bare CR", get + "X-Canary: v2\rX: y\r\n\r\n", canary, matchMalformed},
		{"malformed: obs-fold", get + "X-Canary: v1\r\n v2\r\n\r\n", canary, matchMalformed},
		{"malformed: request line without version", "GET /\r\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: HTTP/2.0", "GET / HTTP/2.0\r\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: two spaces", "GET  / HTTP/1.1\r\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: bad method", "G(T / HTTP/1.1\r\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: leading empty line", "\r\nGET / HTTP/1.1\r\nX-Canary: v2\r\n\r\n", canary, matchMalformed},
		{"malformed: TLS", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", canary, matchMalformed},
		{"malformed before the data ends", "GET / HTTP/1.1\r\nX-Canary v2", canary, matchMalformed},
		{"head exactly ending at len", get + "X-Canary: v2\r\n\r\n", []testRule{presentRule("host"), exactRule("x-canary", "v2")}, 0},
		{"1900-byte head, matching header last", longHead(1900), []testRule{presentRule("x-none"), exactRule("x-canary", "v2")}, 1},
		{"head of FIRST_MAX", longHead(firstMax), canary, 0},
		{"head past FIRST_MAX", longHead(firstMax + 1), canary, matchIncomplete},
		{"head past FIRST_MAX, the header before", strings.Replace(longHead(firstMax+1), "Host:", "X-Canary: v2\r\nHost:", 1),
			canary, matchIncomplete},
		{"value longer than RULE_VALUE_MAX, exact rule of its prefix", get + "X-Canary: " + long + "\r\n\r\n",
			[]testRule{exactRule("x-canary", long[:ruleValueMax])}, matchNone},
		{"value longer than RULE_VALUE_MAX, prefix rule", get + "X-Canary: " + long + "\r\n\r\n",
			[]testRule{prefixRule("x-canary", long[:ruleValueMax])}, 0},
		{"value of RULE_VALUE_MAX, exact", get + "X-Canary: " + long[:ruleValueMax] + "\r\n\r\n",
			[]testRule{exactRule("x-canary", long[:ruleValueMax])}, 0},
		{"name longer than RULE_NAME_MAX", get + "X-" + strings.Repeat("n", ruleNameMax) + ": v\r\n\r\n",
			[]testRule{presentRule("x-" + strings.Repeat("n", ruleNameMax-2))}, matchNone},
		{"name of RULE_NAME_MAX", get + "X-" + strings.Repeat("N", ruleNameMax-2) + ": v\r\n\r\n",
			[]testRule{presentRule("x-" + strings.Repeat("n", ruleNameMax-2))}, 0},
		{"count 0", get + "X-Canary: v2\r\n\r\n", nil, matchNone},
		{"count 0, malformed still", get + "X-Canary v2\r\n\r\n", nil, matchMalformed},
		{"pseudo-header rule never matches", get + "X-Canary: v2\r\n\r\n",
			[]testRule{prefixRule(":path", "/"), presentRule(":method"), exactRule("x-canary", "v2")}, 2},
		{"exact rule with an empty value never matches", get + "X-Canary:\r\n\r\n",
			[]testRule{exactRule("x-canary", ""), prefixRule("x-canary", ""), presentRule("x-canary")}, 2},
		{"eight rules, the last matches", get + "X-Canary: v2\r\n\r\n", []testRule{
			presentRule("a"), presentRule("b"), presentRule("c"), presentRule("d"),
			presentRule("e"), presentRule("f"), presentRule("g"), exactRule("x-canary", "v2"),
		}, 7},
	}
}

func TestRulesMatch(t *testing.T) {
	c := newRuleChecker(t)
	for _, tc := range rulesCases() {
		t.Run(tc.name, func(t *testing.T) {
			if ref, known := refRulesMatch([]byte(tc.req), tc.rules); known && ref != tc.want {
				t.Errorf("reference: %d, want %d", ref, tc.want)
			}
			c.setRules(t, tc.rules)
			if got := c.match(t, []byte(tc.req)); got != tc.want {
				t.Errorf("rules_match = %d, want %d (request %q)", got, tc.want, tc.req)
			}
		})
	}
}

// TestRulesMatchRandom runs random requests through the kernel and the
// reference: valid ones, ones with a byte replaced (valid or malformed,
// matching or not), and valid ones cut short (incomplete).
func TestRulesMatchRandom(t *testing.T) {
	c := newRuleChecker(t)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	counts := map[int]int{}
	for i := range n {
		req, rules := randomHead(rng), randomRules(rng)
		switch i % 3 {
		case 1:
			req = mutateHead(rng, req)
		case 2:
			req = req[:rng.IntN(len(req)-3)]
		}
		want, known := refRulesMatch(req, rules)
		if !known && i%3 == 1 {
			continue // a mutation that ends no head: malformed or incomplete, the reference does not tell
		}
		c.setRules(t, rules)
		if got := c.match(t, req); got != want {
			t.Fatalf("case %d: rules_match = %d, reference %d\nrules %+v\nrequest %q", i, got, want, rules, req)
		}
		counts[want]++
	}
	t.Logf("results: %v", counts)
}

// TestRulesReference checks refRulesMatch against what the agent does in
// user space (httphead.Parse, match.Decide) on random valid requests.
func TestRulesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		req, rules := randomHead(rng), randomRules(rng)
		got, _ := refRulesMatch(req, rules)
		head, _, err := httphead.Parse(req)
		if err != nil {
			t.Fatalf("case %d: %q: %v", i, req, err)
		}
		var mrules []service.MatchRule
		for _, r := range rules {
			fm := service.FieldMatch{Name: r.name}
			switch r.kind {
			case ruleExact:
				fm.Value = r.value
			case rulePrefix:
				fm.Prefix = r.value
			case rulePresent:
				fm.Present = true
			}
			mrules = append(mrules, service.MatchRule{Header: &fm})
		}
		_, want, ok := match.Decide(mrules, match.Request{Headers: head.Headers})
		if !ok {
			want = matchNone
		}
		if got != want {
			t.Fatalf("case %d: reference %d, match.Decide %d\nrules %+v\nrequest %q", i, got, want, rules, req)
		}
	}
}

var (
	randNames  = []string{"X-Canary", "X-IMSI", "X-User", "Accept", "X-Canary-Id", "X-Canar", "User-Agent", "x-b"}
	randValues = []string{
		"", "v2", "V2", "v22", "v", "46001", "4600123", "460", "a b", "*/*", "v2, v3",
		strings.Repeat("z", ruleValueMax-1), strings.Repeat("z", ruleValueMax), strings.Repeat("z", ruleValueMax+3),
	}
	randBlanks = []string{"", " ", "  ", "\t", " \t"}
)

// randomHead is a valid head (to httphead too: no Host twice, no
// Content-Length), sometimes followed by a body.
func randomHead(rng *rand.Rand) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /%s HTTP/1.%d\r\n", []string{"GET", "POST", "M-SEARCH"}[rng.IntN(3)],
		strings.Repeat("p", rng.IntN(30)), rng.IntN(2))
	for range rng.IntN(9) {
		name := []byte(randNames[rng.IntN(len(randNames))])
		for j := range name {
			if rng.IntN(2) == 0 {
				name[j] = bytes.ToUpper(name[j : j+1])[0]
			} else {
				name[j] = bytes.ToLower(name[j : j+1])[0]
			}
		}
		fmt.Fprintf(&b, "%s:%s%s%s\r\n", name, randBlanks[rng.IntN(len(randBlanks))],
			randValues[rng.IntN(len(randValues))], randBlanks[rng.IntN(len(randBlanks))])
	}
	b.WriteString("\r\n")
	if rng.IntN(4) == 0 {
		b.WriteString("X-Canary: v2\r\n\r\n")
	}
	return b.Bytes()
}

func randomRules(rng *rand.Rand) []testRule {
	rules := make([]testRule, rng.IntN(rulesMax+1))
	for i := range rules {
		r := &rules[i]
		r.name = strings.ToLower(randNames[rng.IntN(len(randNames))])
		r.kind = uint8(rng.IntN(3))
		if r.kind != rulePresent {
			r.value = randValues[1+rng.IntN(len(randValues)-2)] // not empty, not over the limit
		}
	}
	return rules
}

// mutateHead replaces one byte of req with one of the bytes the grammar
// cares about.
func mutateHead(rng *rand.Rand, req []byte) []byte {
	req = bytes.Clone(req)
	const interesting = "\r\n \t:\x00\x7f\x80Av2("
	req[rng.IntN(len(req))] = interesting[rng.IntN(len(interesting))]
	return req
}

// refRulesMatch is rules_match in Go. Where rules_match's walk would
// end, if the head is valid, is the first CRLF CRLF: every CRLF of a valid
// head ends a line. Without one the request is incomplete if it is the
// start of a valid head and malformed if not, which the reference does
// not tell: it answers matchIncomplete, and known false.
func refRulesMatch(req []byte, rules []testRule) (result int, known bool) {
	if len(req) > firstMax {
		req = req[:firstMax]
	}
	end := bytes.Index(req, []byte("\r\n\r\n"))
	if end < 0 {
		return matchIncomplete, false
	}
	return refHead(string(req[:end]), rules), true
}

// refHead matches a head, without its final CRLF CRLF.
func refHead(head string, rules []testRule) int {
	lines := strings.Split(head, "\r\n")
	if !refRequestLine(lines[0]) {
		return matchMalformed
	}
	headers := map[string][]string{}
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !refToken(name) || strings.IndexFunc(value, refCtl) >= 0 {
			return matchMalformed
		}
		name = strings.ToLower(name)
		headers[name] = append(headers[name], strings.Trim(value, " \t"))
	}
	for i, r := range rules {
		if i >= rulesMax || r.name == "" || len(r.name) > ruleNameMax || r.name[0] == ':' || len(r.value) > ruleValueMax {
			continue
		}
		for _, v := range headers[r.name] {
			switch {
			case r.kind == rulePresent,
				r.kind == ruleExact && r.value != "" && v == r.value,
				r.kind == rulePrefix && r.value != "" && strings.HasPrefix(v, r.value):
				return i
			}
		}
	}
	return matchNone
}

func refRequestLine(line string) bool {
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !refToken(parts[0]) || parts[1] == "" ||
		strings.IndexFunc(parts[1], func(r rune) bool { return r == '\t' || refCtl(r) }) >= 0 {
		return false
	}
	v := parts[2]
	return len(v) == 8 && strings.HasPrefix(v, "HTTP/1.") && v[7] >= '0' && v[7] <= '9'
}

func refToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// refCtl: control characters other than tab, bare CR and LF among them.
// (strings.IndexFunc decodes UTF-8: a byte 0x80 and up is not one, as
// for rules_match.)
func refCtl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// What matching costs: a typical request (about 200 bytes, 4 headers)
// against 2 rules, the second matching its last header. The same frame
// with its first byte malformed (the walk stops at once, the copy of the
// payload is the same) is the floor; the difference is the walk.
//
//	flock /tmp/graylane-lab.lock taskset -c 1 go test -run XXX -bench RulesMatch -benchtime 1x ./pkg/stitch/
func BenchmarkRulesMatch(b *testing.B) {
	c := newRuleChecker(b)
	req := []byte("GET /api/v1/orders?customer=1234&page=2 HTTP/1.1\r\n" +
		"Host: shop.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0)\r\n" +
		"Accept: application/json\r\n" +
		"X-Canary: v2\r\n\r\n")
	c.setRules(b, []testRule{prefixRule("x-imsi", "46001"), exactRule("x-canary", "v2")})
	if got := c.match(b, req); got != 1 {
		b.Fatalf("rules_match = %d, want 1", got)
	}
	floor := bytes.Clone(req)
	floor[0] = ' '
	if got := c.match(b, floor); got != matchMalformed {
		b.Fatalf("floor: rules_match = %d, want malformed", got)
	}
	var subj, base []time.Duration
	for range b.N {
		for range costRounds {
			base = append(base, costRun(b, c.objs.RuleCheck, ruleFrame(floor), tcActOK))
			subj = append(subj, costRun(b, c.objs.RuleCheck, ruleFrame(req), tcActOK))
		}
	}
	ms, mb := costMedian(subj), costMedian(base)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms, "ns/run")
	b.ReportMetric(mb, "floor-ns/run")
	b.ReportMetric(ms-mb, "match-ns")
	b.ReportMetric(float64(len(req)), "bytes")
}
