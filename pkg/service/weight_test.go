package service

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseWeight(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Weight
	}{
		{"0", 0},
		{"0%", 0},
		{"0.0", 0},
		{"0.01%", 1},
		{"00.01", 1},
		{"0.1", 10},
		{"0.25%", 25},
		{".5", 50},
		{".05%", 5},
		{"5", 500},
		{"5%", 500},
		{"0005", 500},
		{"5.0%", 500},
		{"12.34%", 1234},
		{"50.5%", 5050},
		{"99.99%", 9999},
		{"100", 10000},
		{"100%", 10000},
		{"100.0", 10000},
		{"100.00%", 10000},
		{"0100%", 10000},
		// White space around the number and around the % sign is ignored:
		// a quoted YAML value may carry it, and it cannot be misread.
		{" 5", 500},
		{"5 ", 500},
		{"5 %", 500},
		{" 5 % ", 500},
		{"\t0.25 %\n", 25},
	} {
		got, err := ParseWeight(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseWeight(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParseWeightErrors(t *testing.T) {
	const (
		above   = "is above 100%"
		tooFine = "has more than two decimals: the split has 0.01% steps"
		notOne  = "is not a weight: use a percentage such as 5, 5% or 0.25%"
	)
	for _, c := range []struct {
		in, want string
	}{
		{"101%", above},
		{"100.01", above},
		{"1000", above},
		{"99999999999999999999", above},
		{"0.001%", tooFine},
		{"5.125", tooFine},
		// At most two decimals, even zeros: the rule is about what is
		// written, not the value.
		{"0.250", tooFine},
		{"-1", notOne},
		{"-0", notOne},
		{"+5", notOne},
		{"abc", notOne},
		{"five", notOne},
		{"", notOne},
		{"   ", notOne},
		{"%", notOne},
		{"5%%", notOne},
		{"%5", notOne},
		{"5.", notOne},
		{".", notOne},
		{".%", notOne},
		{"1e2", notOne},
		{"1.5e3", notOne}, // not "more than two decimals": it is no number at all
		{"0.0a", notOne},
		{"0x10", notOne},
		{"1,5", notOne},
		{"5 5", notOne},
		{"5 .5", notOne}, // white space inside the number is an error
		{"5. 5", notOne},
		{"5‰", notOne},
		{"٥", notOne}, // a digit, but not an ASCII one
	} {
		w, err := ParseWeight(c.in)
		if err == nil {
			t.Errorf("ParseWeight(%q) = %d, want an error", c.in, w)
			continue
		}
		// Every message quotes the input as given.
		if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.Contains(msg, strconv.Quote(c.in)) {
			t.Errorf("ParseWeight(%q): %q, want it to quote the input and say %q", c.in, msg, c.want)
		}
	}
}

func TestWeightString(t *testing.T) {
	for w, want := range map[Weight]string{
		0: "0%", 1: "0.01%", 10: "0.1%", 25: "0.25%", 100: "1%", 101: "1.01%", 110: "1.1%",
		500: "5%", 1234: "12.34%", 9999: "99.99%", 10000: "100%",
	} {
		if got := w.String(); got != want {
			t.Errorf("Weight(%d).String() = %q, want %q", w, got, want)
		}
	}
}

// TestWeightRoundTrip checks every weight: String prints the shortest exact
// percentage, and ParseWeight reads it back to the same weight.
func TestWeightRoundTrip(t *testing.T) {
	for w := Weight(0); w <= MaxWeight; w++ {
		s := w.String()
		if want := strconv.FormatFloat(float64(w)/100, 'f', -1, 64) + "%"; s != want {
			t.Fatalf("Weight(%d).String() = %q, want %q", w, s, want)
		}
		back, err := ParseWeight(s)
		if err != nil || back != w {
			t.Fatalf("Weight(%d) prints as %q, which parses as %d, %v", w, s, back, err)
		}
		if bare, err := ParseWeight(strings.TrimSuffix(s, "%")); err != nil || bare != w {
			t.Fatalf("%q without %% parses as %d, %v; want %d", s, bare, err, w)
		}
	}
}

func TestWeightFromBasisPoints(t *testing.T) {
	for _, c := range []struct {
		bp int
		ok bool
	}{{-1, false}, {0, true}, {1, true}, {10000, true}, {10001, false}, {1 << 20, false}} {
		w, err := WeightFromBasisPoints(c.bp)
		if c.ok != (err == nil) || (c.ok && int(w) != c.bp) {
			t.Errorf("WeightFromBasisPoints(%d) = %d, %v", c.bp, w, err)
		}
	}
}

func TestWeightRatio(t *testing.T) {
	for w, want := range map[Weight]float64{0: 0, 1: 0.0001, 2500: 0.25, 10000: 1} {
		if got := w.Ratio(); got != want {
			t.Errorf("Weight(%d).Ratio() = %v, want %v", w, got, want)
		}
	}
}
