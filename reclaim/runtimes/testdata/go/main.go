// A Go program that leaks creack/pty masters the way real ones do (issue 9)
// and keeps serving HTTP on 127.0.0.1. Every pty.Open file is in the
// netpoller (EPOLLET). Leaks: a master with a goroutine blocked in Read
// (it closes both ends itself on EOF), and masters dropped without Close,
// which only their finalizers will close. A live terminal (cat) must keep
// its data. Events go as JSON lines to $EVENTS.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
)

var (
	evMu  sync.Mutex
	evOut *os.File
)

func ev(kind string, kv ...any) {
	m := map[string]any{"ev": kind, "t": time.Now().UnixNano()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	evMu.Lock()
	evOut.Write(append(b, '\n'))
	evMu.Unlock()
}

// fdOf reads the fd number without File.Fd, which would take the file out
// of non-blocking mode.
func fdOf(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// guard turns a panic in a goroutine into an event before it kills us.
func guard(where string) {
	if r := recover(); r != nil {
		ev("exception", "msg", fmt.Sprintf("%s: %v\n%s", where, r, debug.Stack()))
		os.Exit(70)
	}
}

// blockedReader leaks a master whose goroutine sits in Read: the program
// only learns of the end by EOF or an error, then closes both ends.
func blockedReader() {
	m, tty, err := pty.Open()
	if err != nil {
		panic(err)
	}
	mfd, tfd := fdOf(m), fdOf(tty)
	ev("leak", "name", "blocked.master", "fd", mfd, "closes", true)
	ev("leak", "name", "blocked.slave", "fd", tfd, "closes", true)
	go func() {
		defer guard("blocked reader")
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			if n > 0 {
				ev("read", "fd", mfd, "n", n)
			}
			if err != nil {
				ev("readend", "fd", mfd, "err", err.Error())
				m.Close()
				ev("close", "name", "blocked.master", "fd", mfd)
				tty.Close()
				ev("close", "name", "blocked.slave", "fd", tfd)
				return
			}
		}
	}()
}

// dropped leaks masters nobody references: with GC off until /gc, their
// finalizers run only then, and close whatever the fd numbers are by then.
func dropped(n int) {
	for i := 0; i < n; i++ {
		m, tty, err := pty.Open()
		if err != nil {
			panic(err)
		}
		ev("leak", "name", "dropped.master", "fd", fdOf(m), "closes", false)
		ev("leak", "name", "dropped.slave", "fd", fdOf(tty), "closes", false)
	}
}

// echo writes a word into a terminal running cat and waits for it to come
// back.
func echo(f *os.File, r *bufio.Reader, word string) error {
	if _, err := f.Write([]byte(word + "\n")); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			if strings.Contains(line, word) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no echo of %s", word)
	}
}

type liveTerm struct {
	f   *os.File
	r   *bufio.Reader
	cmd *exec.Cmd
}

func spawnCat() (*liveTerm, error) {
	cmd := exec.Command("/bin/cat")
	f, err := pty.Start(cmd)
	if err != nil {
		return nil, err
	}
	return &liveTerm{f: f, r: bufio.NewReader(f), cmd: cmd}, nil
}

// forcedGC runs the collector and waits until the finalizers queued by it
// have run (a sentinel's finalizer runs after those queued before it).
func forcedGC() {
	done := make(chan struct{})
	func() {
		s := new([64]byte)
		runtime.SetFinalizer(s, func(*[64]byte) { close(done) })
	}()
	runtime.GC()
	runtime.GC()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
}

func main() {
	var err error
	evOut, err = os.OpenFile(os.Getenv("EVENTS"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	debug.SetGCPercent(-1)
	live, err := spawnCat()
	if err != nil {
		panic(err)
	}
	if err := echo(live.f, live.r, "before"); err != nil {
		panic(err)
	}
	blockedReader()
	dropped(4)

	var counter int
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, counter)
		counter++
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, _ *http.Request) {
		forcedGC()
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/exercise", func(w http.ResponseWriter, _ *http.Request) {
		var errs, steps []string
		check := func(what string, err error) {
			steps = append(steps, what)
			if err != nil {
				errs = append(errs, what+": "+err.Error())
			}
		}
		time.Sleep(300 * time.Millisecond)
		check("live echo", echo(live.f, live.r, "after"))
		n, err := spawnCat()
		check("new spawn", err)
		if err == nil {
			check("new spawn echo", echo(n.f, n.r, "fresh"))
			n.f.Close()
			_ = n.cmd.Wait()
		}
		forcedGC()
		check("live echo after gc", echo(live.f, live.r, "collected"))
		b, _ := json.Marshal(map[string]any{"ok": len(errs) == 0, "errors": errs, "steps": steps})
		w.Write(b)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprint(w, "bye")
		go func() {
			time.Sleep(50 * time.Millisecond)
			live.f.Close()
			_ = live.cmd.Process.Kill()
			_ = live.cmd.Wait()
			ev("exit", "code", code)
			os.Exit(code)
		}()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux, IdleTimeout: time.Hour}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(ln); err != nil {
		ev("exception", "msg", err.Error())
		os.Exit(71)
	}
}
