package testproc

import (
	"os"
	"testing"
)

// PolicyDir is a fresh directory a policy file may live in: policy.Load
// refuses a file whose directory chain from / is not all root's and closed
// to others, and t.TempDir() is under /tmp (mode 1777).
func PolicyDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "ptyreclaim-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
