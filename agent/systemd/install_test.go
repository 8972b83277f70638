package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
)

// TestInstall: `make install DESTDIR=…` lays out the documented files with
// their modes, keeps an existing configuration, `systemd-analyze verify`
// accepts the unit in that root, and `make uninstall` takes back all but
// the configuration.
func TestInstall(t *testing.T) {
	testenv.RequireTool(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	make := func(target string) string {
		t.Helper()
		cmd := exec.Command("make", "-C", "../..", target, "DESTDIR="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
		return string(out)
	}
	make("install")
	for path, mode := range map[string]os.FileMode{
		"usr/bin/graylane-agent":                               0o755,
		"usr/bin/graylanectl":                                  0o755,
		"lib/systemd/system/graylane-agent.service":            0o644,
		"etc/graylane/agent.yaml":                              0o600,
		"etc/graylane/manifests.d":                             0o755 | os.ModeDir,
		"usr/share/bash-completion/completions/graylanectl":    0o644,
		"usr/share/zsh/vendor-completions/_graylanectl":        0o644,
		"usr/share/fish/vendor_completions.d/graylanectl.fish": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/graylane-agent.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/bin/graylane-agent --config /etc/graylane/agent.yaml") {
		t.Errorf("the unit's ExecStart: %v\n%s", err, unit)
	}
	// systemd checks the unit against this host, with ExecStart pointing
	// at the binary installed in the scratch root.
	check := filepath.Join(t.TempDir(), "graylane-agent.service")
	local := strings.ReplaceAll(string(unit), "ExecStart=/usr/bin/", "ExecStart="+filepath.Join(root, "usr/bin")+"/")
	if err := os.WriteFile(check, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", check).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// An operator's configuration survives a reinstall.
	conf := filepath.Join(root, "etc/graylane/agent.yaml")
	if err := os.WriteFile(conf, []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	make("install")
	if got, _ := os.ReadFile(conf); string(got) != "# mine\n" {
		t.Errorf("reinstall overwrote the configuration: %q", got)
	}
	make("uninstall")
	for _, gone := range []string{"usr/bin/graylane-agent", "usr/bin/graylanectl", "lib/systemd/system/graylane-agent.service",
		"usr/share/bash-completion/completions/graylanectl", "usr/share/man/man1/graylanectl.1"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after uninstall: %v", gone, err)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("uninstall removed the configuration: %v", err)
	}
}

// TestVagrantfile: the multi-VM lab's Vagrantfile is valid (no hypervisor
// here: provider settings are not checked).
func TestVagrantfile(t *testing.T) {
	testenv.RequireTool(t, "vagrant", "vagrant")
	cmd := exec.Command("vagrant", "validate", "--ignore-provider")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "VAGRANT_HOME="+t.TempDir(), "VAGRANT_CHECKPOINT_DISABLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Vagrantfile validated successfully") {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
	for _, vm := range []string{"client", "gw1", "gw2", "gw3", "s0", "s1", "c0"} {
		if !strings.Contains(string(out), "==> "+vm+":") {
			t.Errorf("no VM %s in the lab:\n%s", vm, out)
		}
	}
}
