package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
)

// hostDpkgStatus is the real system's package database, which the test
// must leave as it found it.
const hostDpkgStatus = "/var/lib/dpkg/status"

// packaged lists every file and directory the package holds, but for the
// man pages (checked by name), with its mode as `dpkg-deb -c` prints it.
var packaged = map[string]string{
	"./etc/":                      "drwxr-xr-x",
	"./etc/graylane/":             "drwxr-xr-x",
	"./etc/graylane/agent.yaml":   "-rw-------",
	"./etc/graylane/manifests.d/": "drwxr-xr-x",
	"./lib/":                      "drwxr-xr-x",
	"./lib/systemd/":              "drwxr-xr-x",
	"./lib/systemd/system/":       "drwxr-xr-x",
	"./lib/systemd/system/graylane-agent.service": "-rw-r--r--",
	"./usr/":                                   "drwxr-xr-x",
	"./usr/bin/":                               "drwxr-xr-x",
	"./usr/bin/graylane-agent":                 "-rwxr-xr-x",
	"./usr/bin/graylanectl":                    "-rwxr-xr-x",
	"./usr/share/":                             "drwxr-xr-x",
	"./usr/share/bash-completion/":             "drwxr-xr-x",
	"./usr/share/bash-completion/completions/": "drwxr-xr-x",
	"./usr/share/bash-completion/completions/graylanectl": "-rw-r--r--",
	"./usr/share/doc/":                                       "drwxr-xr-x",
	"./usr/share/doc/graylane/":                              "drwxr-xr-x",
	"./usr/share/doc/graylane/changelog.gz":                  "-rw-r--r--",
	"./usr/share/doc/graylane/copyright":                     "-rw-r--r--",
	"./usr/share/fish/":                                      "drwxr-xr-x",
	"./usr/share/fish/vendor_completions.d/":                 "drwxr-xr-x",
	"./usr/share/fish/vendor_completions.d/graylanectl.fish": "-rw-r--r--",
	"./usr/share/lintian/":                                   "drwxr-xr-x",
	"./usr/share/lintian/overrides/":                         "drwxr-xr-x",
	"./usr/share/lintian/overrides/graylane":                 "-rw-r--r--",
	"./usr/share/man/":                                       "drwxr-xr-x",
	"./usr/share/man/man1/":                                  "drwxr-xr-x",
	"./usr/share/zsh/":                                       "drwxr-xr-x",
	"./usr/share/zsh/vendor-completions/":                    "drwxr-xr-x",
	"./usr/share/zsh/vendor-completions/_graylanectl":        "-rw-r--r--",
}

// manPage is the name of one of graylanectl's man pages, gzipped.
var manPage = regexp.MustCompile(`^\./usr/share/man/man1/graylanectl(-[a-z-]+)?\.1\.gz$`)

// debName is the file name make deb gives the package.
var debName = regexp.MustCompile(`^graylane_([0-9][A-Za-z0-9.+~]*)_([a-z0-9]+)\.deb$`)

// TestDebianPackage: `make deb` builds a package that lintian finds no
// error in, holding the documented files with their modes and the default
// configuration as its one conffile. Installed into a scratch root (a dpkg
// database of its own: the host's stays as it was), systemd-analyze accepts
// its unit; installing it again keeps an operator's edits without a
// prompt; removing it keeps the configuration and says how to take the
// data plane off; purging it deletes /etc/graylane and /var/lib/graylane.
func TestDebianPackage(t *testing.T) {
	testenv.RequirePrivileges(t)
	testenv.RequireTool(t, "dpkg", "dpkg")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
	testenv.RequireTool(t, "lintian", "lintian")
	testenv.RequireTool(t, "systemd-analyze", "systemd")
	hostBefore, err := os.ReadFile(hostDpkgStatus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if after, err := os.ReadFile(hostDpkgStatus); err != nil || !bytes.Equal(after, hostBefore) {
			t.Errorf("the host's %s changed (%v): the test must only touch its scratch root", hostDpkgStatus, err)
		}
	})

	deb := buildDeb(t)
	checkLintian(t, deb)
	checkContents(t, deb)

	root := scratchRoot(t)
	dpkg(t, root, "--install", deb)
	checkInstalled(t, root)
	verifyUnit(t, root)
	operator := writeOperatorFiles(t, root)
	checkReinstall(t, root, deb, operator)
	checkRemoveAndPurge(t, root, operator)
}

// buildDeb runs make deb into a directory of the test's own and returns
// the package, checking its name against its control fields.
func buildDeb(t *testing.T) string {
	t.Helper()
	dist := t.TempDir()
	run(t, "make", "-C", "..", "deb", "DIST="+dist)
	debs, err := filepath.Glob(filepath.Join(dist, "*.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("make deb left %v in %s (%v), want one package", debs, dist, err)
	}
	m := debName.FindStringSubmatch(filepath.Base(debs[0]))
	if m == nil {
		t.Fatalf("package name %s: want graylane_<version>_<arch>.deb", filepath.Base(debs[0]))
	}
	fields := run(t, "dpkg-deb", "--field", debs[0], "Package", "Version", "Architecture")
	want := "Package: graylane\nVersion: " + m[1] + "\nArchitecture: " + m[2] + "\n"
	if fields != want {
		t.Errorf("control fields:\n%s\nwant (from the file name):\n%s", fields, want)
	}
	t.Logf("built %s", filepath.Base(debs[0]))
	return debs[0]
}

// checkLintian fails on any lintian error and lists the rest, overridden
// tags included, in the test log.
func checkLintian(t *testing.T, deb string) {
	t.Helper()
	cmd := exec.Command("lintian", "--fail-on", "none", "--display-info", "--show-overrides", deb)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		switch {
		case strings.HasPrefix(line, "E: "):
			t.Errorf("lintian: %s", strings.TrimSpace(line))
		case strings.HasPrefix(line, "W: "), strings.HasPrefix(line, "I: "), strings.HasPrefix(line, "O: "):
			t.Logf("lintian: %s", strings.TrimSpace(line))
		}
	}
}

// checkContents compares `dpkg-deb -c` with packaged, the man pages with
// manPage, and the conffiles with the configuration.
func checkContents(t *testing.T, deb string) {
	t.Helper()
	seen := map[string]bool{}
	manPages := 0
	for line := range strings.Lines(run(t, "dpkg-deb", "--contents", deb)) {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Errorf("dpkg-deb -c: unexpected line (a link?): %q", line)
			continue
		}
		mode, owner, path := f[0], f[1], f[5]
		if owner != "root/root" {
			t.Errorf("%s: owner %s, want root/root", path, owner)
		}
		if manPage.MatchString(path) {
			manPages++
			if mode != "-rw-r--r--" {
				t.Errorf("%s: mode %s, want -rw-r--r--", path, mode)
			}
			continue
		}
		want, ok := packaged[path]
		switch {
		case !ok:
			t.Errorf("%s (%s): not a documented part of the package", path, mode)
		case mode != want:
			t.Errorf("%s: mode %s, want %s", path, mode, want)
		}
		seen[path] = true
	}
	for path := range packaged {
		if !seen[path] {
			t.Errorf("%s: missing from the package", path)
		}
	}
	if manPages < 2 {
		t.Errorf("%d gzipped man pages, want graylanectl.1.gz and one per subcommand", manPages)
	}
	if conffiles := run(t, "dpkg-deb", "--info", deb, "conffiles"); conffiles != "/etc/graylane/agent.yaml\n" {
		t.Errorf("conffiles: %q, want only /etc/graylane/agent.yaml", conffiles)
	}
}

// scratchRoot returns an empty root with a dpkg database of its own.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// dpkg runs dpkg on root: its database, its log, and the maintainer
// scripts run on this host with DPKG_ROOT=root (--force-script-chrootless:
// the scratch root has no shell to chroot into), which is what makes them
// prefix their paths and leave systemd alone.
func dpkg(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "dpkg", append([]string{"--root=" + root, "--log=" + filepath.Join(root, "var/log/dpkg.log"), "--force-script-chrootless"}, args...)...)
}

// checkInstalled checks the installed files' modes and that the installed
// graylanectl runs.
func checkInstalled(t *testing.T, root string) {
	t.Helper()
	for path, mode := range map[string]os.FileMode{
		"usr/bin/graylane-agent":                    0o755,
		"usr/bin/graylanectl":                       0o755,
		"lib/systemd/system/graylane-agent.service": 0o644,
		"etc/graylane/agent.yaml":                   0o600,
		"etc/graylane/manifests.d":                  0o755 | os.ModeDir,
		"usr/share/man/man1/graylanectl.1.gz":       0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed %s: %v", path, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("installed %s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	if out := run(t, filepath.Join(root, "usr/bin/graylanectl"), "version"); strings.TrimSpace(out) == "" {
		t.Errorf("graylanectl version printed nothing")
	}
}

// verifyUnit runs systemd-analyze verify on the installed unit in root,
// where it also checks that ExecStart's /usr/bin/graylane-agent exists.
// The scratch root gets what a Debian host has and the unit refers to,
// copied from this host for the check and removed after it: systemd's
// targets and /bin/kill (ExecReload).
func verifyUnit(t *testing.T, root string) {
	t.Helper()
	targets, err := filepath.Glob("/lib/systemd/system/*.target")
	if err != nil || len(targets) == 0 {
		t.Fatalf("no systemd targets on this host (%v)", err)
	}
	var copied []string
	for _, src := range append(targets, "/bin/kill") {
		dst := filepath.Join(root, src)
		if err := copyFile(src, dst); err != nil {
			t.Fatal(err)
		}
		copied = append(copied, dst)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "graylane-agent.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify --root: %v\n%s", err, out)
	}
	for _, path := range copied {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	}
}

// writeOperatorFiles puts in root what an operator and a running agent
// add: an edited configuration, a manifest, Raft data, the unit's
// enablement link. It returns them, path to content.
func writeOperatorFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	operator := map[string]string{
		"etc/graylane/agent.yaml":                                           "# mine\nbpffs: /sys/fs/bpf/mine # pins\n",
		"etc/graylane/manifests.d/web.yaml":                                 "# a manifest\n",
		"var/lib/graylane/raft/raft.db":                                     "raft\n",
		"etc/systemd/system/multi-user.target.wants/graylane-agent.service": "",
	}
	for path, content := range operator {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return operator
}

// checkReinstall installs the package over itself, as an upgrade does
// (prerm upgrade, postinst configure with the old version): the operator's
// files stay as they are, without a conffile prompt, and the
// first-install hint is not repeated.
func checkReinstall(t *testing.T, root, deb string, operator map[string]string) {
	t.Helper()
	out := dpkg(t, root, "--install", deb) // stdin is /dev/null: a conffile prompt fails it
	if strings.Contains(out, "name the interfaces") || strings.Contains(out, "keep steering") {
		t.Errorf("the reinstall repeated the first-install hint or said the agent stopped:\n%s", out)
	}
	for path, content := range operator {
		if got, err := os.ReadFile(filepath.Join(root, path)); err != nil || string(got) != content {
			t.Errorf("%s after reinstall: %q, %v; want the operator's %q", path, got, err, content)
		}
	}
}

// checkRemoveAndPurge removes the package from root, with the operator's
// files in place, then purges it.
func checkRemoveAndPurge(t *testing.T, root string, operator map[string]string) {
	t.Helper()
	out := dpkg(t, root, "--remove", "graylane")
	t.Logf("dpkg --remove:\n%s", out)
	if !strings.Contains(out, "keep steering") || !strings.Contains(out, `"graylane-agent cleanup"`) ||
		!strings.Contains(out, "pins under /sys/fs/bpf/mine ") {
		t.Errorf("remove did not say the data plane stays under the configuration's bpffs and how to take it off:\n%s", out)
	}
	for _, gone := range []string{"usr/bin/graylane-agent", "usr/bin/graylanectl", "lib/systemd/system/graylane-agent.service", "usr/share/man/man1/graylanectl.1.gz"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after remove: %v", gone, err)
		}
	}
	for path, content := range operator {
		if got, err := os.ReadFile(filepath.Join(root, path)); err != nil || string(got) != content {
			t.Errorf("%s after remove: %q, %v; want the operator's %q", path, got, err, content)
		}
	}
	if status := run(t, "dpkg", "--root="+root, "--status", "graylane"); !strings.Contains(status, "Status: deinstall ok config-files") {
		t.Errorf("after remove, dpkg --status:\n%s", status)
	}

	dpkg(t, root, "--purge", "graylane")
	for _, gone := range []string{"etc/graylane", "var/lib/graylane", "etc/systemd/system/multi-user.target.wants/graylane-agent.service"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after purge: %v", gone, err)
		}
	}
}

// run runs a command and returns its standard output, failing t with both
// outputs if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// copyFile copies src to dst with its mode, creating dst's directory.
func copyFile(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, fi.Mode().Perm())
}
