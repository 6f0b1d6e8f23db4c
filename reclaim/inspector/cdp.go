package inspector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// session is one Chrome DevTools Protocol session with a Node inspector.
type session struct {
	ws     *wsConn
	nextID int
}

// target is one entry of the inspector's /json/list.
type target struct {
	Type                 string `json:"type"`
	WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
}

// listTargets asks the inspector's HTTP endpoint for its debugging
// targets, over a connection dial proves.
func listTargets(ctx context.Context, addr string, dial func(context.Context) (net.Conn, error), deadline time.Time) ([]target, error) {
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: time.Until(deadline), Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/json/list", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("inspector /json/list: %s", resp.Status)
	}
	return parseTargets(io.LimitReader(resp.Body, maxMessage))
}

// parseTargets decodes /json/list and keeps the node targets whose
// debugger URL is on the loopback address.
func parseTargets(r io.Reader) ([]target, error) {
	var all []target
	if err := json.NewDecoder(r).Decode(&all); err != nil {
		return nil, fmt.Errorf("inspector /json/list: %w", err)
	}
	var out []target
	for _, t := range all {
		if t.Type == "node" && hostIsLoopback(t.WebSocketDebuggerURL) {
			out = append(out, t)
		}
	}
	return out, nil
}

func dialSession(ctx context.Context, dial func(context.Context) (net.Conn, error), wsURL string, deadline time.Time) (*session, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	ws, err := dialWS(c, wsURL)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &session{ws: ws, nextID: 1}, nil
}

// request is a CDP command.
type request struct {
	ID     int    `json:"id"`
	Method string `json:"method"`
	Params any    `json:"params,omitempty"`
}

// response is a CDP answer, or an event (ID 0), which we skip.
type response struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// encodeRequest is the text of one command.
func encodeRequest(id int, method string, params any) ([]byte, error) {
	return json.Marshal(request{ID: id, Method: method, Params: params})
}

// decodeResponse parses one message and says whether it answers id.
func decodeResponse(msg []byte, id int) (json.RawMessage, bool, error) {
	var r response
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, false, fmt.Errorf("inspector: bad message: %w", err)
	}
	if r.ID != id {
		return nil, false, nil
	}
	if r.Error != nil {
		return nil, true, fmt.Errorf("inspector: %s (%d)", r.Error.Message, r.Error.Code)
	}
	return r.Result, true, nil
}

// call sends one command and waits for its answer, skipping events.
func (s *session) call(method string, params any, out any) error {
	id := s.nextID
	s.nextID++
	msg, err := encodeRequest(id, method, params)
	if err != nil {
		return err
	}
	if err := s.ws.send(opText, msg); err != nil {
		return err
	}
	for {
		m, err := s.ws.readMessage()
		if err != nil {
			return fmt.Errorf("inspector: %s: %w", method, err)
		}
		res, ok, err := decodeResponse(m, id)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(res, out)
	}
}

// remoteObject is the part of a CDP RemoteObject we use.
type remoteObject struct {
	Type     string          `json:"type"`
	ObjectID string          `json:"objectId"`
	Value    json.RawMessage `json:"value"`
}

// evalResult is the answer of Runtime.evaluate and Runtime.callFunctionOn.
type evalResult struct {
	Result           remoteObject `json:"result"`
	ExceptionDetails *struct {
		Text      string `json:"text"`
		Exception *struct {
			Description string `json:"description"`
		} `json:"exception"`
	} `json:"exceptionDetails"`
}

func (r evalResult) err() error {
	if r.ExceptionDetails == nil {
		return nil
	}
	msg := r.ExceptionDetails.Text
	if e := r.ExceptionDetails.Exception; e != nil && e.Description != "" {
		msg = e.Description
	}
	return errors.New("exception in the target: " + firstLine(msg))
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// objectGroup lets us release every object we made the inspector hold.
const objectGroup = "ptyreclaim"

// builtin is a JS expression for one of Node's built-in modules, for CommonJS
// and ES module programs alike (process.getBuiltinModule: Node 20.16+).
func builtin(name string) string {
	q := strconv.Quote(name)
	return "(typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule(" + q +
		") : process.mainModule.require(" + q + "))"
}

// releaseFunction runs inside the target on the array of every net.Socket
// in its heap (tty.ReadStream, node-pty's sockets and pipes derive from it).
// For each planned fd it first asks the program's own fstat whether the fd
// is still the file the plan saw (want: dev and rdev, low 32 bits, and
// ino, as decimal strings); then it destroys the sockets whose libuv handle
// owns the fd, so the program's own close handlers run as on a real
// hang-up, or closes an fd no socket owns. A watched fd (epoll, kqueue;
// watched[i] lists the other fds of the same open file) no socket owns is
// closed only when a socket owns one of those others; else its watcher is
// a handle the evaluation cannot see (a native addon's), and closing the
// number under it would leave that handle working on whatever the next
// open gets. It returns one outcome per fd.
const releaseFunction = `function (fds, want, watched) {
	const fs = ` + "%s" + `;
	const low32 = (v) => String(BigInt.asUintN(32, v));
	const out = [];
	for (let i = 0; i < fds.length; i++) {
		const fd = fds[i];
		try {
			const w = want[i];
			if (w) {
				const st = fs.fstatSync(fd, {bigint: true});
				if (low32(st.dev) !== w.dev || String(st.ino) !== w.ino || low32(st.rdev) !== w.rdev) {
					out.push({fd: fd, how: "failed", error: "fd " + fd + " is another file now"});
					continue;
				}
			}
			const owners = this.filter(s => s && s._handle && s._handle.fd === fd);
			if (owners.length > 0) {
				for (const s of owners) s.destroy();
				out.push({fd: fd, how: "destroyed", owner: (owners[0].constructor && owners[0].constructor.name) || "Socket", count: owners.length});
			} else if (watched[i] && !this.some(s => s && s._handle && watched[i].includes(s._handle.fd))) {
				out.push({fd: fd, how: "failed", error: "fd " + fd + " is watched, but no net.Socket owns it: its owner is a handle the evaluation cannot see, left open"});
			} else {
				fs.closeSync(fd);
				out.push({fd: fd, how: "closed"});
			}
		} catch (e) {
			out.push({fd: fd, how: "failed", error: String(e && e.message || e)});
		}
	}
	return out;
}`

// expectArg is the want argument of releaseFunction: one entry per fd,
// null where nothing is compared.
func expectArg(fds []int, expect map[int]FileID) []any {
	out := make([]any, len(fds))
	for i, fd := range fds {
		if id, ok := expect[fd]; ok {
			out[i] = map[string]string{
				"dev":  strconv.FormatUint(uint64(id.Dev), 10),
				"ino":  strconv.FormatUint(id.Ino, 10),
				"rdev": strconv.FormatUint(uint64(id.Rdev), 10),
			}
		}
	}
	return out
}

// Outcome is what the evaluation inside the target did with one fd.
type Outcome struct {
	FD    int    `json:"fd"`
	How   string `json:"how"` // destroyed, closed or failed
	Owner string `json:"owner,omitempty"`
	Count int    `json:"count,omitempty"`
	Error string `json:"error,omitempty"`
}

// parseOutcomes decodes the evaluation's answer, keeping only the fds we
// asked about: the target's answer is untrusted.
func parseOutcomes(raw json.RawMessage, fds []int) ([]Outcome, error) {
	var got []Outcome
	if err := json.Unmarshal(raw, &got); err != nil {
		return nil, fmt.Errorf("inspector: bad answer: %w", err)
	}
	asked := map[int]bool{}
	for _, fd := range fds {
		asked[fd] = true
	}
	var out []Outcome
	for _, o := range got {
		if !asked[o.FD] {
			continue
		}
		switch o.How {
		case "destroyed", "closed", "failed":
		default:
			o.How, o.Error = "failed", "unknown outcome "+strconv.Quote(o.How)
		}
		delete(asked, o.FD)
		out = append(out, o)
	}
	for _, fd := range fds {
		if asked[fd] {
			out = append(out, Outcome{FD: fd, How: "failed", Error: "the target did not answer for this fd"})
			delete(asked, fd)
		}
	}
	return out, nil
}

// watchedArg is the watched argument of releaseFunction: per fd, null
// when not watched, else the other fds of the same open file.
func watchedArg(fds []int, watched map[int][]int) []any {
	out := make([]any, len(fds))
	for i, fd := range fds {
		if same, ok := watched[fd]; ok {
			if same == nil {
				same = []int{}
			}
			out[i] = same
		}
	}
	return out
}

// deadmanKey names the timer the target keeps while we talk to it.
const deadmanKey = "Symbol.for('ptyreclaim.inspector.deadline')"

// armDeadman has the target close its own inspector at the deadline
// whatever happens to us: if this process dies or hangs mid-exchange, the
// endpoint still closes on time. The timer is unref'd, so it never keeps
// the program alive; closeInspector clears it.
func (s *session) armDeadman(deadline time.Time) error {
	ms := time.Until(deadline).Milliseconds()
	if ms < 1 {
		ms = 1
	}
	var res evalResult
	if err := s.call("Runtime.evaluate", map[string]any{
		"expression": "(() => { const t = setTimeout(() => " + builtin("inspector") + ".close(), " +
			strconv.FormatInt(ms, 10) + "); t.unref(); globalThis[" + deadmanKey + "] = t; return true })()",
		"silent": true,
	}, &res); err != nil {
		return err
	}
	return res.err()
}

// releaseFDs runs the whole exchange: arm the dead-man timer, find every
// net.Socket, release the fds, and drop our references.
func (s *session) releaseFDs(fds []int, expect map[int]FileID, watched map[int][]int, deadline time.Time) ([]Outcome, error) {
	if err := s.armDeadman(deadline); err != nil {
		return nil, err
	}
	defer func() {
		_ = s.call("Runtime.releaseObjectGroup", map[string]any{"objectGroup": objectGroup}, nil)
	}()
	var proto evalResult
	if err := s.call("Runtime.evaluate", map[string]any{
		"expression": builtin("net") + ".Socket.prototype", "objectGroup": objectGroup, "silent": true,
	}, &proto); err != nil {
		return nil, err
	}
	if err := proto.err(); err != nil {
		return nil, err
	}
	if proto.Result.ObjectID == "" {
		return nil, errors.New("inspector: no net.Socket prototype")
	}
	var objs struct {
		Objects remoteObject `json:"objects"`
	}
	if err := s.call("Runtime.queryObjects", map[string]any{
		"prototypeObjectId": proto.Result.ObjectID, "objectGroup": objectGroup,
	}, &objs); err != nil {
		return nil, err
	}
	var res evalResult
	if err := s.call("Runtime.callFunctionOn", map[string]any{
		"objectId":            objs.Objects.ObjectID,
		"functionDeclaration": fmt.Sprintf(releaseFunction, builtin("fs")),
		"arguments":           []map[string]any{{"value": fds}, {"value": expectArg(fds, expect)}, {"value": watchedArg(fds, watched)}},
		"returnByValue":       true,
		"silent":              true,
	}, &res); err != nil {
		return nil, err
	}
	if err := res.err(); err != nil {
		return nil, err
	}
	return parseOutcomes(res.Result.Value, fds)
}

// closeInspector asks the target to stop its inspector as soon as this
// session is gone (inspector.close() waits for open sessions to end).
func (s *session) closeInspector() error {
	var res evalResult
	if err := s.call("Runtime.evaluate", map[string]any{
		"expression": "clearTimeout(globalThis[" + deadmanKey + "]), delete globalThis[" + deadmanKey + "], " +
			"setImmediate(() => " + builtin("inspector") + ".close()), true",
		"silent": true,
	}, &res); err != nil {
		return err
	}
	return res.err()
}
