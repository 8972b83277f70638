package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/agent/config"
)

// TestTokenFileMode: a token's secret file that group or others may read
// or write is refused, naming the file and the fix.
func TestTokenFileMode(t *testing.T) {
	dir := t.TempDir()
	for mode, wantErr := range map[os.FileMode]bool{0o600: false, 0o400: false, 0o640: true, 0o604: true, 0o620: true} {
		path := filepath.Join(dir, "token-"+mode.String())
		if err := os.WriteFile(path, []byte("secret-0123456789abcdef\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		cfg := &config.Config{Tokens: []config.Token{{Name: "ops", SecretFile: path, Tenant: "*"}}}
		_, err := loadTokens(cfg)
		if wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "chmod 600")) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}
