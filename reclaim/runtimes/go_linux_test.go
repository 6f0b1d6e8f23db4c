package runtimes

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

var (
	goTargetOnce sync.Once
	goTargetBin  string
	goTargetErr  error
)

// goTarget builds testdata/go (its own module, github.com/creack/pty from
// the module proxy, pinned by its go.sum) once per test binary.
func goTarget(t testing.TB) string {
	t.Helper()
	goTargetOnce.Do(func() {
		dir, err := os.MkdirTemp("", "runtimes-go-")
		if err != nil {
			goTargetErr = err
			return
		}
		goTargetBin = filepath.Join(dir, "gotarget")
		cmd := exec.Command("go", "build", "-o", goTargetBin, ".")
		cmd.Dir = "testdata/go"
		if out, err := cmd.CombinedOutput(); err != nil {
			goTargetErr = fmt.Errorf("go build testdata/go: %v\n%s", err, out)
		}
	})
	if goTargetErr != nil {
		t.Fatal(goTargetErr)
	}
	return goTargetBin
}

func startGo(t testing.TB, events string) *target {
	t.Helper()
	cmd := exec.Command(goTarget(t))
	cmd.Env = append(os.Environ(), "EVENTS="+events)
	p := testproc.StartCmd(t, cmd)
	port, err := strconv.Atoi(p.Ready)
	if err != nil {
		t.Fatalf("ready line %q", p.Ready)
	}
	return &target{Proc: p, PID: p.PID, Release: []int{p.PID}, Port: port, ExitCode: 9}
}

// keepAliveSurvivesGC opens 8 keep-alive connections after the release, so
// that they take the lowest free fd numbers (those a close would have
// freed), forces a GC (the dropped masters' finalizers run), and checks
// that every connection still answers: no finalizer closed a reused fd.
func keepAliveSurvivesGC(t testing.TB, tg *target, o *outcome) {
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	ask := func(c conn) error {
		_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprint(c.c, "GET /count HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	var conns []conn
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tg.Port))
		if err != nil {
			o.fail("keep-alive %d: %v", i, err)
			return
		}
		defer c.Close()
		cc := conn{c, bufio.NewReader(c)}
		if err := ask(cc); err != nil {
			o.lose("keep-alive %d before GC: %v", i, err)
			return
		}
		conns = append(conns, cc)
	}
	if _, err := get(t, tg.Port, "/gc"); err != nil {
		o.lose("forced GC request: %v (a finalizer closed its connection?)", err)
	}
	lost := 0
	for _, c := range conns {
		if ask(c) != nil {
			lost++
		}
	}
	if lost > 0 {
		o.lose("%d of 8 keep-alive connections lost at the forced GC (a finalizer closed a reused fd)", lost)
	}
}

var goRuntime = runtime{Name: "go", Start: startGo, WantEOF: true, AfterRelease: keepAliveSurvivesGC}

func TestGoPTY(t *testing.T) { runAll(t, goRuntime) }
