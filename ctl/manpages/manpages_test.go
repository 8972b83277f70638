package manpages

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWrite: a page for graylanectl and for every command, each a man
// page that names its command; groff formats them without a warning
// where it is installed.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"graylanectl", "graylanectl-capture", "graylanectl-mirror", "graylanectl-shadow",
		"graylanectl-replay", "graylanectl-rollout-start", "graylanectl-completion"} {
		page, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Errorf("%s.1: %v", name, err)
			continue
		}
		if !strings.Contains(string(page), `.TH "GRAYLANECTL" "1"`) || !strings.Contains(string(page), name) {
			t.Errorf("%s.1 does not look like its man page:\n%s", name, page[:min(300, len(page))])
		}
		if groff, err := exec.LookPath("groff"); err == nil {
			out, err := exec.Command(groff, "-k", "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, name+".1")).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("groff on %s.1: %v\n%s", name, err, out)
			}
		}
	}
}
