package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Limits on self-service connections: a slow or hostile client must not
// hold the daemon, and one user must not take every slot.
const (
	requestTimeout = 5 * time.Second
	maxConnections = 16
	maxPerUID      = 4
)

// listen opens the self-service socket. Everyone may connect (mode 0666):
// who may do what is decided per request from the peer's credentials.
func listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: exists and is not a socket; refusing to replace it", path)
		}
		// A socket left by a daemon that died; we hold the lock, so no
		// other daemon is using it.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}

// serve answers self-service requests until the listener is closed, then
// waits for every request it started: a release in progress finishes
// before the daemon exits.
func (d *Daemon) serve(ctx context.Context, l *net.UnixListener) {
	var (
		handlers sync.WaitGroup
		mu       sync.Mutex
		total    int
		perUID   = map[int]int{}
	)
	defer handlers.Wait()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("self-service accept failed", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		cl, err := d.cfg.Platform.Peer(c)
		if err != nil {
			d.refuse(c, d.log, Response{Error: "cannot tell who is asking: " + err.Error()})
			continue
		}
		mu.Lock()
		busy := ""
		switch {
		case perUID[cl.UID] >= maxPerUID:
			busy = fmt.Sprintf("the daemon is busy: uid %d already has %d requests open (at most %d per user); try again", cl.UID, perUID[cl.UID], maxPerUID)
		case total >= maxConnections:
			busy = fmt.Sprintf("the daemon is busy: %d requests are open (at most %d); try again", total, maxConnections)
		default:
			total++
			perUID[cl.UID]++
		}
		mu.Unlock()
		log := d.log.With(zap.Int("peer_uid", cl.UID), zap.Int("peer_pid", cl.PID))
		if busy != "" {
			d.refuse(c, log, Response{Error: busy, Busy: true})
			continue
		}
		handlers.Add(1)
		go func() {
			defer func() {
				mu.Lock()
				total--
				perUID[cl.UID]--
				mu.Unlock()
				handlers.Done()
			}()
			d.handle(ctx, c, cl, log)
		}()
	}
}

// refuse answers a request with an error, logs the refusal and hangs up.
func (d *Daemon) refuse(c *net.UnixConn, log *zap.Logger, r Response) {
	log.Info("self-service refused", zap.String("reason", r.Error))
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	writeResponse(c, r)
	c.Close()
}

// handle answers one connection: one request line, one response line. A
// panic ends this request, not the daemon.
func (d *Daemon) handle(ctx context.Context, c *net.UnixConn, cl peer.Caller, log *zap.Logger) {
	defer c.Close()
	answered := false
	defer func() {
		if r := recover(); r != nil {
			d.metrics.panics.WithLabelValues("request").Inc()
			log.Error("panic recovered; the daemon keeps serving", zap.String("where", "request"),
				zap.String("panic", fmt.Sprint(r)), zap.Stack("stack"))
			if !answered {
				writeResponse(c, Response{Error: "internal error in the daemon (logged); nothing more was done"})
			}
		}
	}()
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	// A client still sending when the daemon stops is let go at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	line, err := bufio.NewReaderSize(c, maxRequest).ReadSlice('\n')
	stop()
	if err != nil {
		log.Info("self-service refused", zap.String("reason", "bad request"), zap.Error(err))
		writeResponse(c, Response{Error: "bad request: one JSON line of at most 64 KiB expected", Usage: true})
		return
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		log.Info("self-service refused", zap.String("reason", "bad request"), zap.Error(err))
		writeResponse(c, Response{Error: "bad request: " + err.Error(), Usage: true})
		return
	}
	// The injection itself may take a while; the deadline was for reading.
	_ = c.SetDeadline(time.Time{})
	resp := d.selfService(ctx, cl, req, log)
	if resp.Error != "" {
		log.Info("self-service refused", zap.String("reason", resp.Error))
	}
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	answered = true
	writeResponse(c, resp)
}

// selfService checks and runs one request.
func (d *Daemon) selfService(ctx context.Context, cl peer.Caller, req Request, log *zap.Logger) Response {
	if req.Op != "release" {
		return Response{Error: fmt.Sprintf("bad request: unknown op %q", req.Op), Usage: true}
	}
	pol := d.policy()
	if !cl.Root && !pol.SelfService {
		return Response{Error: "self-service is off: the policy " + pol.Source + " does not set self_service: true"}
	}
	if err := policy.CheckMethodFlag(req.Method); err != nil {
		return Response{Error: err.Error(), Usage: true}
	}
	var minIdle *time.Duration
	if req.MinIdle != "" {
		v, err := time.ParseDuration(req.MinIdle)
		if err != nil || v < 0 {
			return Response{Error: fmt.Sprintf("--min-idle %q: not a duration of 0 or more", req.MinIdle), Usage: true}
		}
		minIdle = &v
	}
	if !req.All && len(req.PIDs) == 0 && len(req.Names) == 0 {
		return Response{Error: "name your processes with --pid or --name, or use --all", Usage: true}
	}
	scan, err := d.sharedScan(ctx, pol, minIdle, log)
	if err != nil {
		return Response{Error: err.Error()}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A request that waited for the lock while the daemon was told to
	// stop starts nothing new.
	if ctx.Err() != nil {
		return Response{Error: "the daemon is stopping; nothing was done"}
	}
	rep, err := d.release(ctx, releaseRequest{
		caller: &cl, pids: req.PIDs, names: req.Names, all: req.All,
		orphans: req.Orphans, method: req.Method,
	}, scan, log)
	if err != nil {
		var te *pipeline.TargetError
		return Response{Error: err.Error(), Usage: errors.As(err, &te)}
	}
	return Response{Report: &rep}
}

// scanShare lets self-service requests share scans: a request that
// arrives while a scan runs waits for the next one, together with every
// other request that arrives meanwhile, so that N requests at once cost
// two scans, not N. Requests with another --min-idle classify differently
// and get scans of their own.
type scanShare struct {
	mu   sync.Mutex
	next map[string]*sharedScan // per --min-idle: the scan arriving requests will use
	run  sync.Mutex             // one scan at a time
}

type sharedScan struct {
	done chan struct{}
	scan *pipeline.Scan
	err  error
}

var errScanPanicked = errors.New("the scan failed (logged)")

// sharedScan returns a scan taken after the request arrived.
func (d *Daemon) sharedScan(ctx context.Context, pol *policy.Policy, minIdle *time.Duration, log *zap.Logger) (*pipeline.Scan, error) {
	key := "policy"
	if minIdle != nil {
		key = minIdle.String()
	}
	s := &d.scans
	s.mu.Lock()
	c, joined := s.next[key]
	if !joined {
		c = &sharedScan{done: make(chan struct{}), err: errScanPanicked}
		s.next[key] = c
	}
	s.mu.Unlock()
	if !joined {
		func() {
			defer close(c.done)
			s.run.Lock()
			defer s.run.Unlock()
			// From here on, arriving requests wait for the next scan.
			s.mu.Lock()
			delete(s.next, key)
			s.mu.Unlock()
			c.scan, c.err = pipeline.Take(ctx, d.cfg.Source, pol, minIdle, log)
			if c.err == nil {
				d.metrics.observeScan(c.scan.Snap, c.scan.Findings, c.scan.Took.Seconds())
			}
		}()
	}
	select {
	case <-c.done:
		return c.scan, c.err
	case <-ctx.Done():
		return nil, errors.New("the daemon is stopping; nothing was done")
	}
}

func writeResponse(c net.Conn, r Response) {
	b, _ := json.Marshal(r)
	_, _ = c.Write(append(b, '\n'))
}

// owns reports whether the process belongs to the caller by its real uid
// (root owns all); mayAct then checks every other credential.
func owns(cl *peer.Caller, p *snapshot.Process) bool { return cl.Root || p.UID == cl.UID }
