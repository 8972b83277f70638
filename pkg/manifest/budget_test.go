package manifest

import (
	"fmt"
	"strings"
	"testing"
)

// aliasDocuments returns n small documents (under 1 KiB each) whose
// aliases expand to 27 000 values each: each within the walk budget on
// its own.
func aliasDocuments(n int) []byte {
	list := func(item string) string { return "[" + strings.Repeat(item+", ", 29) + item + "]" }
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: r%d}
e: &e %s
v: &v %s
s: &s %s
spec: {service: auth, steps: *s}
`, i, list(`"true"`), list("{exec: *e}"), list("{verify: *v}"))
	}
	return []byte(b.String())
}

// TestAliasDocuments: the walk budget is the file's, not each document's:
// 200 documents that each fit it are refused together, after a bounded
// walk (BenchmarkAliasDocuments measures what the refusal costs).
func TestAliasDocuments(t *testing.T) {
	if _, err := ParseAll("one.yaml", aliasDocuments(1)); err != nil && strings.Contains(err.Error(), "too large") {
		t.Fatalf("one document within the budget was refused: %v", err)
	}
	_, err := ParseAll("many.yaml", aliasDocuments(200))
	if err == nil || !strings.Contains(err.Error(), "more than 100000 values in all") {
		t.Fatalf("200 alias documents: %v, want the file's walk budget named", err)
	}
}

func BenchmarkAliasDocuments(b *testing.B) {
	data := aliasDocuments(200)
	for b.Loop() {
		ParseAll("many.yaml", data)
	}
}
