//go:build linux

package inspector

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

func procPath(pid int, name string) string { return "/proc/" + strconv.Itoa(pid) + "/" + name }

// IsNode reports whether pid runs Node.js or Electron: an ELF object it has
// mapped executable (its program or a library such as libnode.so) exports
// node_module_register. Files on a FUSE mount are not read: their server
// could hold the reader forever.
func IsNode(pid int) (bool, error) {
	node, _, err := isNode(pid)
	return node, err
}

// isNode is IsNode that also says whether a FUSE mapping was skipped.
func isNode(pid int) (node, fuseSkipped bool, err error) {
	maps, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		return false, false, err
	}
	fuse, err := fuseDevices(pid)
	if err != nil {
		return false, false, err
	}
	seen := map[string]bool{}
	for _, m := range parseExecMappings(maps) {
		if seen[m.path] {
			continue
		}
		seen[m.path] = true
		if fuse[m.dev] {
			fuseSkipped = true
			continue
		}
		if exportsSymbol(pid, m, nodeSymbol) {
			return true, fuseSkipped, nil
		}
	}
	return false, fuseSkipped, nil
}

type mapping struct {
	rng   string // "start-end" in hex, the name in /proc/PID/map_files
	dev   string // "major:minor" in hex, as maps writes it
	inode string
	path  string
}

// parseExecMappings returns the file-backed executable mappings of a
// /proc/PID/maps text.
func parseExecMappings(maps []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) < 3 || f[1][2] != 'x' || !strings.HasPrefix(f[5], "/") {
			continue
		}
		out = append(out, mapping{rng: f[0], dev: f[3], inode: f[4], path: strings.Join(f[5:], " ")})
	}
	return out
}

// fuseDevices lists the devices ("major:minor" in maps' hex spelling) of
// the FUSE mounts in pid's mount namespace.
func fuseDevices(pid int) (map[string]bool, error) {
	data, err := os.ReadFile(procPath(pid, "mountinfo"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 3 || sep < 0 || sep+1 >= len(f) || !strings.HasPrefix(f[sep+1], "fuse") {
			continue
		}
		maj, min, ok := strings.Cut(f[2], ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if ok && err1 == nil && err2 == nil {
			out[fmt.Sprintf("%02x:%02x", a, b)] = true
		}
	}
	return out, nil
}

// openMapped opens the very file behind mapping m of pid. The path in maps
// may name another file by now (renamed over, or a symlink into a FUSE
// mount or to a FIFO, either of which would hold the reader forever), so
// the kernel's own link to the mapped file is used: /proc/PID/map_files
// (root only). Without it, the path is opened without blocking, and
// anything but a regular file with the mapping's inode is refused.
func openMapped(pid int, m mapping) (*os.File, error) {
	f, err := os.OpenFile(procPath(pid, "map_files/"+mapFilesName(m.rng)), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.OpenFile(procPath(pid, "root")+m.path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || strconv.FormatUint(st.Ino, 10) != m.inode {
		f.Close()
		return nil, fmt.Errorf("%s is not the mapped file any more", m.path)
	}
	return f, nil
}

// mapFilesName is a maps range as map_files names it: hex without the
// leading zeros maps pads with.
func mapFilesName(rng string) string {
	a, b, _ := strings.Cut(rng, "-")
	start, err1 := strconv.ParseUint(a, 16, 64)
	end, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return rng
	}
	return strconv.FormatUint(start, 16) + "-" + strconv.FormatUint(end, 16)
}

func exportsSymbol(pid int, m mapping, name string) bool {
	r, err := openMapped(pid, m)
	if err != nil {
		return false
	}
	defer r.Close()
	f, err := elf.NewFile(r)
	if err != nil {
		return false
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false
	}
	for _, s := range syms {
		if s.Name == name && s.Section != elf.SHN_UNDEF {
			return true
		}
	}
	return false
}

// Release runs the route in one process. See release: with an error and
// no outcomes, nothing says an fd was touched, but an evaluation whose
// answer was lost may have run: callers check fds from outside again.
func Release(ctx context.Context, t Target, log *zap.Logger) (Report, error) {
	pidfd, err := unix.PidfdOpen(t.PID, 0)
	if err != nil {
		return Report{}, fmt.Errorf("no process %d", t.PID)
	}
	h := &linuxHost{t: t, pidfd: pidfd}
	defer h.close()
	return release(ctx, h, t, log)
}

// linuxHost is the route's view of one process through /proc, pinned by a
// pidfd: the signal cannot reach a process that took over the pid.
type linuxHost struct {
	t     Target
	pidfd int
}

func (h *linuxHost) close() { unix.Close(h.pidfd) }

func (h *linuxHost) recheck() error {
	if why := checkProcess(h.t.PID, h.t.StartTime); why != "" {
		return fmt.Errorf("pid %d %s: not signalled", h.t.PID, why)
	}
	if ok, why := fuseAllows(h.t.PID, nil); !ok {
		return fmt.Errorf("pid %d: %s: not signalled", h.t.PID, why)
	}
	return nil
}

func (h *linuxHost) listener(port int) (own, foreign bool) {
	return listenerOf(h.t.PID, port)
}

func (h *linuxHost) accepted(local netip.AddrPort, port int) (held, foreign bool) {
	return acceptedBy(h.t.PID, local, port)
}

func (h *linuxHost) ports() map[int]bool {
	out := map[int]bool{}
	mine := socketInodes(h.t.PID)
	for _, l := range listeners(h.t.PID) {
		if mine[l.inode] {
			out[l.port] = true
		}
	}
	return out
}

func (h *linuxHost) sigusr1() error {
	return unix.PidfdSendSignal(h.pidfd, unix.SIGUSR1, nil, 0)
}

func (h *linuxHost) gone(fd int) bool {
	_, err := os.Readlink(procPath(h.t.PID, "fd/"+strconv.Itoa(fd)))
	return errors.Is(err, os.ErrNotExist)
}

// checkProcess re-reads what made the plan choose this route: the same
// process, SIGUSR1 caught, Node, our network namespace. It returns what
// refuses the route as a predicate ("does not catch SIGUSR1 ..."), or "".
func checkProcess(pid int, startTime uint64) string {
	data, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return "has exited"
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		return "has an unreadable stat: " + err.Error()
	}
	if startTime != 0 && st.StartTime != startTime {
		return "is another process now (its start time changed)"
	}
	status, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return "has exited"
	}
	cgt, err := sigCgt(status)
	if err != nil {
		return "has an unreadable status: " + err.Error()
	}
	if !CatchesSIGUSR1(cgt) {
		return "does not catch SIGUSR1 (its default action would end it)"
	}
	node, fuseSkipped, err := isNode(pid)
	switch {
	case err != nil:
		return "has unreadable mappings: " + err.Error()
	case !node && fuseSkipped:
		return "is not proven Node.js or Electron (some of its code is on a FUSE mount, which is never read)"
	case !node:
		return "is not Node.js or Electron"
	}
	if why := inspectOptions(pid); why != "" {
		return why
	}
	theirs, err1 := os.Readlink(procPath(pid, "ns/net"))
	ours, err2 := os.Readlink("/proc/self/ns/net")
	if err1 != nil || err2 != nil || theirs != ours {
		return "is in another network namespace (its inspector would not be on our 127.0.0.1)"
	}
	return ""
}

// inspectOptions refuses a program started with inspector options on its
// command line or in NODE_OPTIONS (--inspect-port, --inspect=HOST:PORT,
// --debug-port, --disable-sigusr1, ...): SIGUSR1 could then open the
// inspector on another address or port than the one this route checks,
// watches and closes, or not at all. It returns the refusal, or "".
func inspectOptions(pid int) string {
	var args []string
	if b, err := os.ReadFile(procPath(pid, "cmdline")); err == nil {
		args = strings.Split(string(b), "\x00")
	} else {
		return "has an unreadable command line"
	}
	// The initial environment: NODE_OPTIONS set later by the program
	// itself does not reach its own Node options.
	if b, err := os.ReadFile(procPath(pid, "environ")); err == nil {
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "NODE_OPTIONS="); ok {
				args = append(args, strings.Fields(v)...)
			}
		}
	} else {
		return "has an unreadable environment"
	}
	if opt := inspectorOption(args); opt != "" {
		return "was started with " + strconv.Quote(opt) + " (its inspector would not be the one on 127.0.0.1:" + strconv.Itoa(DefaultPort) + " this route checks and closes)"
	}
	return ""
}

// fuseAllows reads the Electron fuse wire of pid's executable (Linux
// Electron keeps it there). A file on a FUSE mount is not read (its server
// could hold the reader forever; an AppImage mounts itself so): the route
// is refused then. cache, when not nil, keeps answers per file.
func fuseAllows(pid int, cache map[string]fuseAnswer) (bool, string) {
	exe, err := os.Readlink(procPath(pid, "exe"))
	if err != nil {
		return false, "its executable is unreadable"
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	maps, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		return false, "its mappings are unreadable"
	}
	fuse, err := fuseDevices(pid)
	if err != nil {
		return false, "its mounts are unreadable"
	}
	key := ""
	var exeMap mapping
	for _, m := range parseExecMappings(maps) {
		if m.path != exe {
			continue
		}
		if fuse[m.dev] {
			return false, "its executable is on a FUSE mount, whose fuse wire is never read"
		}
		key = m.dev + " " + m.inode + " " + m.path
		exeMap = m
		break
	}
	if key == "" {
		return false, "its executable is not mapped"
	}
	if a, ok := cache[key]; ok {
		return a.ok, a.why
	}
	// The mapping checked above, not /proc/PID/exe: an exec since then
	// could have put a file on a FUSE mount behind that link.
	f, err := openMapped(pid, exeMap)
	if err != nil {
		return false, "its executable is unreadable"
	}
	defer f.Close()
	wires, err := ReadFuseWires(f)
	a := fuseAnswer{why: "its Electron fuse wire is unreadable: " + fmt.Sprint(err)}
	if err == nil {
		a.ok, a.why = NodeCliInspect(wires)
	}
	if cache != nil {
		cache[key] = a
	}
	return a.ok, a.why
}

// Check says whether the route may release pid's fds, and why: the facts
// that allow it, or the first that refuses it. It changes nothing and
// sends nothing.
func (p *Prober) Check(pid int, startTime uint64) (bool, string) {
	if why := checkProcess(pid, startTime); why != "" {
		return false, "it " + why
	}
	ok, fuseWhy := fuseAllows(pid, p.fuses)
	if !ok {
		return false, fuseWhy
	}
	own, foreign := listenerOf(pid, DefaultPort)
	switch {
	case own:
		return false, fmt.Sprintf("its inspector is already open on port %d (someone may be debugging it)", DefaultPort)
	case foreign:
		return false, fmt.Sprintf("port %d is taken by another process", DefaultPort)
	}
	return true, fmt.Sprintf("Node.js or Electron, catches SIGUSR1, %s, port %d free", fuseWhy, DefaultPort)
}

func sigCgt(status []byte) (uint64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("status has no SigCgt")
}

// listener is a listening TCP socket from /proc/PID/net/tcp{,6}.
type listener struct {
	loopback bool // bound to 127.0.0.1 (or ::1)
	port     int
	inode    uint64
}

// parseListeners returns the LISTEN sockets of a /proc/net/tcp or tcp6
// text.
func parseListeners(data []byte) []listener {
	var out []listener
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		ip, p, ok := strings.Cut(f[1], ":")
		port, err1 := strconv.ParseUint(p, 16, 16)
		inode, err2 := strconv.ParseUint(f[9], 10, 64)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		out = append(out, listener{
			loopback: ip == "0100007F" || ip == "00000000000000000000000001000000",
			port:     int(port), inode: inode,
		})
	}
	return out
}

func listeners(pid int) []listener {
	var out []listener
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		if data, err := os.ReadFile(procPath(pid, name)); err == nil {
			out = append(out, parseListeners(data)...)
		}
	}
	return out
}

// socketInodes are the sockets pid holds, from its fd links.
func socketInodes(pid int) map[uint64]bool {
	out := map[uint64]bool{}
	dir := procPath(pid, "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if v, ok := strings.CutPrefix(link, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// conn is one TCP socket of /proc/net/tcp, as the kernel lists it.
type conn struct {
	local, remote netip.AddrPort
	state         string // hex, 01: TCP_ESTABLISHED
	inode         uint64 // 0 while in an accept queue
}

// parseConns returns the IPv4 sockets of a /proc/net/tcp text. The kernel
// prints an address as its four bytes in memory order, read as one
// native-endian word: the little-endian hosts we build for (amd64, arm64).
func parseConns(data []byte) []conn {
	var out []conn
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue
		}
		l, ok1 := parseHexAddrPort(f[1])
		r, ok2 := parseHexAddrPort(f[2])
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if !ok1 || !ok2 || err != nil {
			continue
		}
		out = append(out, conn{local: l, remote: r, state: f[3], inode: inode})
	}
	return out
}

func parseHexAddrPort(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, false
	}
	ip, err1 := strconv.ParseUint(a, 16, 32)
	port, err2 := strconv.ParseUint(p, 16, 16)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}, false
	}
	b := [4]byte{byte(ip), byte(ip >> 8), byte(ip >> 16), byte(ip >> 24)}
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(port)), true
}

// acceptedBy looks for the server end of the connection from local to
// 127.0.0.1:port: held when its socket is in pid's fd table, foreign when
// it has been accepted (it has an inode) into someone else's.
func acceptedBy(pid int, local netip.AddrPort, port int) (held, foreign bool) {
	data, err := os.ReadFile(procPath(pid, "net/tcp"))
	if err != nil {
		return false, false
	}
	server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	for _, c := range parseConns(data) {
		if c.local != server || c.remote != local || c.state != "01" || c.inode == 0 {
			continue
		}
		if socketInodes(pid)[c.inode] {
			return true, false
		}
		// accept(2) gives the socket its inode a moment before it
		// installs the fd: look once more before calling it foreign.
		time.Sleep(50 * time.Millisecond)
		return socketInodes(pid)[c.inode], !socketInodes(pid)[c.inode]
	}
	return false, false
}

// listenerOf says who listens on port in pid's network namespace: pid
// itself on 127.0.0.1 (own), or any other socket (foreign: another
// process, or pid on another address).
func listenerOf(pid, port int) (own, foreign bool) {
	// Listeners first, then the fds: a socket that is listening was
	// created before, so the fd read that follows sees it.
	ls := listeners(pid)
	mine := socketInodes(pid)
	for _, l := range ls {
		if l.port != port {
			continue
		}
		if mine[l.inode] && l.loopback {
			own = true
		} else {
			foreign = true
		}
	}
	return own, foreign
}
