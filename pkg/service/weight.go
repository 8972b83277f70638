package service

import (
	"fmt"
	"strconv"
	"strings"
)

// Weight is a share in basis points: 0 is 0 %, 10000 is 100 %, and one
// step is 0.01 %. The data path compares a key's bucket in [0, 10000)
// against it, so a weight is exact, never rounded by the kernel.
type Weight uint16

// MaxWeight is 100 %.
const MaxWeight Weight = 10000

// ParseWeight reads a percentage: "5", "5%", "0.25%", "100%". A bare number
// is a percentage too. At most two decimals are allowed, since the split has
// 0.01 % steps; anything finer is an error rather than a silent rounding.
// White space before and after the number and around the % sign is ignored
// (" 5 % " is 5 %); inside the number it is an error ("5 .5").
func ParseWeight(s string) (Weight, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(t, "%")
	t = strings.TrimSpace(t)
	if t == "" {
		return 0, fmt.Errorf("%q is not a weight: use a percentage such as 5, 5%% or 0.25%%", s)
	}
	whole, frac, hasFrac := strings.Cut(t, ".")
	if whole == "" {
		whole = "0"
	}
	for _, part := range []string{whole, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, fmt.Errorf("%q is not a weight: use a percentage such as 5, 5%% or 0.25%%", s)
			}
		}
	}
	if hasFrac && (frac == "" || len(frac) > 2) {
		if len(frac) > 2 {
			return 0, fmt.Errorf("weight %q has more than two decimals: the split has 0.01%% steps", s)
		}
		return 0, fmt.Errorf("%q is not a weight: use a percentage such as 5, 5%% or 0.25%%", s)
	}
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	if len(whole) > 3 {
		return 0, fmt.Errorf("weight %q is above 100%%", s)
	}
	w, err := strconv.Atoi(whole)
	if err != nil {
		return 0, fmt.Errorf("%q is not a weight: %w", s, err)
	}
	bp := w * 100
	if frac != "" {
		f, err := strconv.Atoi(frac)
		if err != nil {
			return 0, fmt.Errorf("%q is not a weight: %w", s, err)
		}
		if len(frac) == 1 {
			f *= 10
		}
		bp += f
	}
	if bp > int(MaxWeight) {
		return 0, fmt.Errorf("weight %q is above 100%%", s)
	}
	return Weight(bp), nil
}

// WeightFromBasisPoints checks bp and returns it as a Weight.
func WeightFromBasisPoints(bp int) (Weight, error) {
	if bp < 0 || bp > int(MaxWeight) {
		return 0, fmt.Errorf("weight of %d basis points is outside 0..10000", bp)
	}
	return Weight(bp), nil
}

// String prints the weight as the shortest exact percentage: "5%", "0.25%".
func (w Weight) String() string {
	whole, frac := int(w)/100, int(w)%100
	switch {
	case frac == 0:
		return fmt.Sprintf("%d%%", whole)
	case frac%10 == 0:
		return fmt.Sprintf("%d.%d%%", whole, frac/10)
	default:
		return fmt.Sprintf("%d.%02d%%", whole, frac)
	}
}

// Ratio returns the weight as a fraction in [0, 1].
func (w Weight) Ratio() float64 { return float64(w) / float64(MaxWeight) }
