// Package manpages writes graylanectl's man pages (section 1), one per
// command, generated from the commands themselves (cobra/doc) so that
// they never fall behind a flag.
package manpages

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/graylane/graylane/ctl/root"
)

// Write writes the pages into dir (created if missing). date stamps
// them (a fixed one keeps the build reproducible).
func Write(dir string, date time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	cmd := root.New(nil, io.Discard, io.Discard, func(string) string { return "" })
	cmd.DisableAutoGenTag = true
	header := &doc.GenManHeader{Title: "GRAYLANECTL", Section: "1", Source: "Graylane", Manual: "Graylane manual", Date: &date}
	if err := doc.GenManTree(cmd, header, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
