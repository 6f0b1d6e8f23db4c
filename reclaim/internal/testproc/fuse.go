package testproc

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// HostileFUSE is a libfuse3 server written for the attack tests: it answers
// LOOKUP, GETATTR, OPEN and READDIR, but never answers FLUSH, READ, nor any
// request under /hang. Whoever closes one of its files, reads a page of
// one, or looks up a name under /hang sleeps until the server goes away,
// in D state beyond SIGKILL. Its tree:
//
//	/ptmx          a regular file named like the PTY multiplexer
//	/pts/N         regular files named like PTY slaves (any N)
//	/code          64 KiB of a regular file, to map PROT_EXEC
//	/hang/...      every lookup never answers
//
// Every request it receives is printed on stdout ("lookup /pts/3"), so a
// test can tell exactly what the code under test asked of it.
const hostileFUSESrc = `
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>

static void say(const char *op, const char *path) {
	printf("%s %s\n", op, path);
	fflush(stdout);
}

static void never(const char *op, const char *path) {
	say(op, path);
	for (;;) pause(); /* the request is never answered */
}

static int is_pts(const char *p) { return strncmp(p, "/pts/", 5) == 0 && p[5]; }

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
	(void)fi;
	say("getattr", path);
	if (strncmp(path, "/hang/", 6) == 0) never("getattr", path);
	memset(st, 0, sizeof *st);
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (!strcmp(path, "/") || !strcmp(path, "/pts") || !strcmp(path, "/hang")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!strcmp(path, "/ptmx") || is_pts(path)) {
		st->st_mode = S_IFREG | 0666;
		st->st_nlink = 1;
		st->st_size = 4096;
		return 0;
	}
	if (!strcmp(path, "/code")) {
		st->st_mode = S_IFREG | 0755;
		st->st_nlink = 1;
		st->st_size = 65536;
		return 0;
	}
	return -ENOENT;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
	say("open", path);
	fi->keep_cache = 1;
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
	(void)buf; (void)size; (void)off; (void)fi;
	never("read", path);
	return 0;
}

static int fs_flush(const char *path, struct fuse_file_info *fi) {
	(void)fi;
	never("flush", path);
	return 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
	(void)fi;
	never("release", path);
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
	(void)off; (void)fi; (void)flags;
	say("readdir", path);
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	if (!strcmp(path, "/")) {
		fill(buf, "ptmx", NULL, 0, 0);
		fill(buf, "pts", NULL, 0, 0);
		fill(buf, "code", NULL, 0, 0);
		fill(buf, "hang", NULL, 0, 0);
	}
	return 0;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
	(void)conn;
	cfg->attr_timeout = 3600;
	cfg->entry_timeout = 3600;
	cfg->kernel_cache = 1;
	printf("ready\n");
	fflush(stdout);
	return NULL;
}

static const struct fuse_operations ops = {
	.getattr = fs_getattr,
	.open = fs_open,
	.read = fs_read,
	.flush = fs_flush,
	.release = fs_release,
	.readdir = fs_readdir,
	.init = fs_init,
};

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	return fuse_main(argc, argv, &ops, NULL);
}
`

// FUSE is a running HostileFUSE server.
type FUSE struct {
	// Dir is the mount point.
	Dir  string
	proc *Proc
	mu   sync.Mutex
	reqs []string
	once sync.Once
	done chan struct{}
}

// TestUser creates a real unprivileged user for the test (removed after).
func TestUser(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	_ = exec.Command("userdel", name).Run()
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// As makes cmd run as uid and gid, with no supplementary groups.
func As(uid, gid int, cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd
}

// OpenToAll makes path and the directories above it reachable by every
// user (t.TempDir's directories are private to root).
func OpenToAll(t testing.TB, path string) {
	t.Helper()
	for d := filepath.Dir(path); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// StartHostileFUSE builds the server with gcc (pkg-config fuse3), or takes
// the prebuilt "hostilefs" (see PrebuiltEnv), and mounts
// it, as uid:gid through fusermount3 the way any user can, on a fresh
// directory that user owns. Stop (also run at cleanup) kills the server,
// which fails every request it left unanswered, and unmounts it. A test
// that starts processes which may get stuck on the mount must call
// t.Cleanup(f.Stop) after starting them: cleanups run last-in first-out,
// and their waits return only once the server is gone.
func StartHostileFUSE(t testing.TB, uid, gid int) *FUSE {
	t.Helper()
	userFUSE(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "hostilefs")
	if p, ok := Prebuilt(t, "hostilefs"); ok {
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(bin, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	} else {
		flags, err := exec.Command("pkg-config", "--cflags", "--libs", "fuse3").Output()
		if err != nil {
			t.Fatalf("pkg-config fuse3 (install libfuse3-dev and fuse3): %v", err)
		}
		src := filepath.Join(dir, "hostilefs.c")
		if err := os.WriteFile(src, []byte(hostileFUSESrc), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-O1", "-Wall", "-o", bin, src}, strings.Fields(string(flags))...)
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc hostilefs: %v\n%s", err, out)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	OpenToAll(t, bin)
	// -f: stay in the foreground, so the test owns the server's pid.
	cmd := exec.Command(bin, "-f", "-o", "fsname=hostilefs", mnt)
	if uid != 0 {
		As(uid, gid, cmd)
	}
	f := &FUSE{Dir: mnt, done: make(chan struct{})}
	f.proc = StartCmd(t, cmd)
	go func() {
		for l := range f.proc.Lines {
			f.mu.Lock()
			f.reqs = append(f.reqs, l)
			f.mu.Unlock()
		}
		close(f.done)
	}()
	t.Cleanup(f.Stop)
	return f
}

// userFUSE makes /dev/fuse usable by every user, as udev's default rule
// (MODE="0666") does on every Debian machine; a machine without udev (a
// container, a fresh CI runner) leaves it 0600, and then no user can mount.
// The mode is put back after the test.
func userFUSE(t testing.TB) {
	t.Helper()
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatalf("/dev/fuse: %v (the fuse module is needed)", err)
	}
	if mode := fi.Mode().Perm(); mode&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Fatal(err)
		}
		t.Logf("/dev/fuse was %o; made 0666 for the test, as udev does", mode)
		t.Cleanup(func() { _ = os.Chmod("/dev/fuse", mode) })
	}
}

// Requests returns the requests the server has received so far.
func (f *FUSE) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// Asked reports whether the server received a request op on path.
func (f *FUSE) Asked(op, path string) bool {
	for _, r := range f.Requests() {
		if r == op+" "+path {
			return true
		}
	}
	return false
}

// Stop kills the server and unmounts its file system; every request it left
// unanswered then fails, which frees whoever slept on one. Idempotent.
func (f *FUSE) Stop() {
	f.once.Do(func() {
		_ = syscall.Kill(f.proc.PID, syscall.SIGKILL)
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
		}
		_ = exec.Command("umount", "-l", f.Dir).Run()
	})
}

// String names the mount for messages.
func (f *FUSE) String() string { return fmt.Sprintf("hostilefs at %s (pid %d)", f.Dir, f.proc.PID) }
