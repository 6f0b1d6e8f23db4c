//go:build amd64

package inject

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRoutineBytesMatchSource assembles testdata/routine_amd64.S and
// compares its code and labels with routineAMD64 and the rt* constants.
func TestRoutineBytesMatchSource(t *testing.T) {
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "r.o"), filepath.Join(dir, "r.bin")
	for _, c := range [][]string{
		{"gcc", "-c", "-o", obj, "testdata/routine_amd64.S"},
		{"objcopy", "-O", "binary", "-j", ".text", obj, bin},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != pageSize || !bytes.Equal(bytes.TrimRight(code, "\x00"), routineAMD64) {
		t.Fatalf("routineAMD64 is stale: assembled %d bytes", len(code))
	}
	out, err := exec.Command("nm", obj).Output()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]uint64{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			labels[f[2]], _ = strconv.ParseUint(f[0], 16, 64)
		}
	}
	for name, want := range map[string]uint64{"store": rtStore, "op_pause": rtPause, "pause_ret": rtPauseRet, "hdr": scrHeader,
		"DONE": hdrDone, "ABORT": hdrAbort, "TIMEOUT": hdrTimeout, "TIMEVAR": hdrTimeVar, "FRAME": hdrFrame, "GADGET": hdrGadget,
		"BASE": hdrBase, "SIZE": hdrSize, "TABLE": hdrTable, "PROGRESS": hdrProgress, "OPSIZE": opSize, "RESULT": opResult} {
		if labels[name] != want {
			t.Errorf("label %s at %#x, constant says %#x", name, labels[name], want)
		}
	}
}
