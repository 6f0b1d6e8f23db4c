package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

const validPolicy = "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n"

// writePolicy writes a policy file with the given owner and mode; the test
// runs as root, so any owner can be set.
func writePolicy(t *testing.T, dir, content string, uid int, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("these tests create files owned by other users and must run as root")
	}
	fixHint := "chown root:root "
	tests := []struct {
		name    string
		uid     int
		mode    os.FileMode
		content string
		wantErr string // "" means success
	}{
		{"root 644", 0, 0o644, validPolicy, ""},
		{"root 600", 0, 0o600, validPolicy, ""},
		{"root 444", 0, 0o444, validPolicy, ""},
		{"other owner", 1000, 0o644, validPolicy, "owned by uid 1000, not root"},
		{"nobody owner", 65534, 0o600, validPolicy, "owned by uid 65534, not root"},
		{"group writable", 0, 0o664, validPolicy, "mode 0664 is writable by group or others"},
		{"world writable", 0, 0o646, validPolicy, "mode 0646 is writable by group or others"},
		{"bad content", 0, 0o644, "version: 1\nallow:\n  - nmae: x\n", `policy.yaml:3: unknown key "nmae" in allow rule`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePolicy(t, secureDir(t), tt.content, tt.uid, tt.mode)
			p, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if len(p.Allow) != 1 || p.Source != path {
					t.Errorf("Load = %+v", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) || !strings.HasPrefix(msg, path) {
				t.Errorf("Load error %q, want %q after the path", msg, tt.wantErr)
			}
			if strings.Contains(tt.wantErr, "root") || strings.Contains(tt.wantErr, "writable") {
				if !strings.Contains(msg, fixHint+path+" && chmod 644 "+path) {
					t.Errorf("Load error %q does not say how to fix", msg)
				}
			}
		})
	}
}

func TestLoadNotRegular(t *testing.T) {
	dir := secureDir(t)

	sub := filepath.Join(dir, "policy.d")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(sub); err == nil || !strings.Contains(err.Error(), "not a regular file (a directory)") {
		t.Errorf("Load(dir) = %v", err)
	}

	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Must not hang waiting for a writer.
	if _, err := Load(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file (a named pipe)") {
		t.Errorf("Load(fifo) = %v", err)
	}
}

// A symlink as the policy file is refused even when its target is a good
// root-owned policy: whoever controls where it points controls the policy.
func TestLoadRefusesSymlinkedFile(t *testing.T) {
	dir := secureDir(t)
	target := writePolicy(t, dir, validPolicy, 0, 0o644)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(target); err != nil {
		t.Fatalf("Load(target) = %v", err)
	}
	if _, err := Load(link); err == nil || !strings.Contains(err.Error(), "not a regular file (a symlink)") {
		t.Errorf("Load(symlink to a root policy) = %v", err)
	}
}

func TestLoadDirectoryChecks(t *testing.T) {
	tests := []struct {
		name    string
		uid     int
		mode    os.FileMode
		wantErr string
		fix     string // "" means "chmod 755 DIR"
	}{
		{"root 755", 0, 0o755, "", ""},
		{"other owner", 1000, 0o755, "is owned by uid 1000, not root", ""},
		{"world writable", 0, 0o777, "(mode 0777) is writable by group or others", ""},
		{"sticky world writable", 0, 0o777 | os.ModeSticky, "(mode 1777) is writable by group or others", "keep the policy in a directory only root can write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(secureDir(t), "etc")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := writePolicy(t, dir, validPolicy, 0, 0o644)
			if err := os.Chown(dir, tt.uid, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			fix := tt.fix
			if fix == "" {
				fix = "chmod 755 " + dir
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), fix) {
				t.Errorf("Load = %v, want %q and a fix", err, tt.wantErr)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(secureDir(t), "none.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if want := path + ": cannot open: no such file or directory"; err.Error() != want {
		t.Errorf("Load(missing) = %q, want %q", err, want)
	}

	p, err := LoadInstalled(path)
	if err != nil {
		t.Fatalf("LoadInstalled(missing): %v", err)
	}
	if p.Source != BuiltinSource || len(p.Allow) != 0 || len(p.Deny) != 0 {
		t.Errorf("LoadInstalled(missing) = %+v, want Default()", p)
	}
}

func TestLoadOrDefaultBadFileIsAnError(t *testing.T) {
	path := writePolicy(t, secureDir(t), validPolicy, 1000, 0o644)
	if _, err := LoadInstalled(path); err == nil {
		t.Error("loadOrDefault accepted a file owned by another user")
	}
}

func TestLoadTooLarge(t *testing.T) {
	big := "version: 1\n" + strings.Repeat("# padding\n", maxFileSize/10+1)
	path := writePolicy(t, secureDir(t), big, 0, 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestDefaultPath(t *testing.T) {
	want := "/etc/ptyreclaim/policy.yaml"
	if runtime.GOOS == "darwin" {
		want = "/Library/Application Support/ptyreclaim/policy.yaml"
	}
	if got := DefaultPath(); got != want {
		t.Errorf("DefaultPath() = %q, want %q", got, want)
	}
}

func TestShellQuote(t *testing.T) {
	if got := shellQuote("/etc/ptyreclaim/policy.yaml"); got != "/etc/ptyreclaim/policy.yaml" {
		t.Errorf("got %s", got)
	}
	if got := shellQuote("/Library/Application Support/p.yaml"); got != "'/Library/Application Support/p.yaml'" {
		t.Errorf("got %s", got)
	}
	if got := shellQuote("/tmp/it's"); got != `'/tmp/it'\''s'` {
		t.Errorf("got %s", got)
	}
}

// secureDir is a fresh directory whose whole chain from / is root's and
// not writable by others, as Load demands: t.TempDir() lives under /tmp,
// which everyone may write to.
func secureDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "ptyreclaim-policy-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
