package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Where pins live, and whether they outlive the agent.
//
// Pinned maps and links keep steering after the agent exits only if they
// are pinned in a bpffs that outlives it. `ip netns exec` runs a command
// in a mount namespace of its own, with /sys remounted for the network
// namespace, so /sys/fs/bpf there is not the host's bpffs: one mounted in
// that namespace dies with the agent, and a kill -9 would unpin the whole
// data path. The agent then pins in the host's bpffs instead, reached
// through the root of a process of the host's mount namespace (PID 1, or
// the nearest ancestor that is in another mount namespace than the agent:
// the shell or the service manager that ran ip netns exec) and held open,
// so that the path stays valid whatever that process does later. When no
// such bpffs can be reached, the agent says loudly that the data path will
// not survive it, and how to fix that (also in graylane-agent check).

// standardBPFFS is where the host's bpffs is mounted.
const standardBPFFS = "/sys/fs/bpf"

// maxAncestors bounds the walk up the process tree.
const maxAncestors = 8

// PinLocation is where a configured pin path really is.
type PinLocation struct {
	// Path is where to pin: the configured path, or the same path in the
	// host's bpffs reached through a directory held open.
	Path string
	// Survives says whether pins there outlive this process.
	Survives bool
	// Note says what was found, for the log and graylane-agent check.
	Note string
	dir  *os.File
}

// Close releases the directory held open for Path, if any. Pins made
// there stay.
func (l *PinLocation) Close() error {
	if l.dir == nil {
		return nil
	}
	err := l.dir.Close()
	l.dir = nil
	return err
}

// LocatePins finds where pins of the configured path go and whether they
// will outlive this process; it mounts a bpffs where none can be reached.
func LocatePins(path string, log *slog.Logger) (PinLocation, error) {
	if !filepath.IsAbs(path) {
		return PinLocation{}, fmt.Errorf("bpffs path %q must be absolute", path)
	}
	if loc, found := hostPins(path); found {
		log.Warn("this agent runs in a mount namespace of its own without the host's bpffs at /sys/fs/bpf (ip netns exec?): pinning in the host's, so the data path outlives the agent", "via", loc.Note)
		return loc, loc.prepare()
	}
	if err := preparePinPath(path, log); err != nil {
		return PinLocation{}, err
	}
	loc := survival(path)
	if !loc.Survives {
		log.Error("pins will not outlive this agent: " + loc.Note)
	}
	return loc, nil
}

// FindPins is LocatePins for a look that changes nothing (graylane-agent
// check): it mounts nothing, and says whether the agent's pins would
// outlive it, started as this process is.
func FindPins(path string) (PinLocation, error) {
	if !filepath.IsAbs(path) {
		return PinLocation{}, fmt.Errorf("bpffs path %q must be absolute", path)
	}
	if loc, found := hostPins(path); found {
		return loc, nil
	}
	return survival(path), nil
}

// hostPins is the host's bpffs for a path below /sys/fs/bpf when this
// process's /sys/fs/bpf is no bpffs.
func hostPins(path string) (PinLocation, bool) {
	under, rest := underStandard(path)
	if !under {
		return PinLocation{}, false
	}
	if ok, err := isBPFFS(standardBPFFS); err != nil || ok {
		return PinLocation{}, false
	}
	return hostBPFFS(rest)
}

// survival says whether pins at path outlive this process: they do
// unless this process runs in a mount namespace of its own and the host
// sees another file system at path (the bpffs there is this namespace's;
// where it is none yet, the one the agent would mount would be).
func survival(path string) PinLocation {
	loc := PinLocation{Path: path, Survives: true, Note: "pinned in the bpffs at " + path}
	pid, private := hostPID()
	onBPF, _ := onBPFFS(path)
	if private && (!onBPF || !sameAsHost(path, pid)) {
		loc.Survives = false
		loc.Note = fmt.Sprintf("the bpffs at %s is (or would be) mounted in this process's own mount namespace, not the host's (process %d sees another file system there): the data path dies with the agent; "+
			"run the agent in the host's mount namespace (systemd: NetworkNamespacePath= instead of ip netns exec; or nsenter --net=/run/netns/NAME), "+
			"or mount a bpffs there on the host before starting it", path, pid)
	}
	return loc
}

// onBPFFS says whether path, or the nearest directory above it that
// exists, is on a bpffs.
func onBPFFS(path string) (bool, error) {
	for p := path; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			return isBPFFS(p)
		}
		if p == "/" {
			return false, nil
		}
	}
}

// prepare makes the pin directory in the host's bpffs.
func (l PinLocation) prepare() error {
	if err := os.MkdirAll(l.Path, 0o700); err != nil {
		return fmt.Errorf("create bpffs path %s: %w", l.Path, err)
	}
	return nil
}

// underStandard says whether path is at or below /sys/fs/bpf, and what
// follows it.
func underStandard(path string) (bool, string) {
	rest, ok := strings.CutPrefix(filepath.Clean(path)+"/", standardBPFFS+"/")
	return ok, strings.TrimSuffix(rest, "/")
}

// hostBPFFS finds the host's bpffs through a process of another mount
// namespace, and opens it; rest is the pin path below /sys/fs/bpf.
func hostBPFFS(rest string) (PinLocation, bool) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return PinLocation{}, false
	}
	for _, pid := range hostCandidates() {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || ns == self {
			continue
		}
		root := fmt.Sprintf("/proc/%d/root%s", pid, standardBPFFS)
		if ok, err := isBPFFS(root); err != nil || !ok {
			continue
		}
		dir, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		path := filepath.Join(fmt.Sprintf("/proc/self/fd/%d", dir.Fd()), rest)
		return PinLocation{Path: path, Survives: true, dir: dir,
			Note: fmt.Sprintf("the host's bpffs at %s/%s, through the root of process %d (mount namespace %s)", standardBPFFS, rest, pid, ns)}, true
	}
	return PinLocation{}, false
}

// hostCandidates are the processes whose mount namespace may be the
// host's: PID 1, then this process's ancestors, nearest first.
func hostCandidates() []int {
	out := []int{1}
	pid := os.Getppid()
	for range maxAncestors {
		if pid <= 1 {
			break
		}
		out = append(out, pid)
		next, err := parentOf(pid)
		if err != nil {
			break
		}
		pid = next
	}
	return out
}

// parentOf reads a process's parent from /proc/PID/stat.
func parentOf(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, errors.New("unreadable stat")
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0, errors.New("unreadable stat")
	}
	return strconv.Atoi(fields[1])
}

// hostPID is a process of another mount namespace than this one whose
// root can be read (PID 1, else the nearest ancestor): ok is false when
// this process is in the host's mount namespace, or none can be read.
func hostPID() (int, bool) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return 0, false
	}
	for _, pid := range hostCandidates() {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || ns == self {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/", pid)); err == nil {
			return pid, true
		}
	}
	return 0, false
}

// sameAsHost says whether path, as this process sees it, is on the same
// bpffs as the host sees at that path (the same device): pins there
// outlive this process's mount namespace. A bpffs the lab or an operator
// mounted on the host and this namespace inherited is; one mounted in
// this namespace is not (the host sees another file system there).
func sameAsHost(path string, pid int) bool {
	var here, host unix.Stat_t
	if err := unix.Stat(existingAncestor(path), &here); err != nil {
		return false
	}
	hostPath := fmt.Sprintf("/proc/%d/root%s", pid, existingAncestor(path))
	if err := unix.Stat(hostPath, &host); err != nil {
		return false
	}
	return here.Dev == host.Dev
}

// existingAncestor is path, or the nearest directory above it that
// exists.
func existingAncestor(path string) string {
	for p := path; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == "/" {
			return p
		}
	}
}
