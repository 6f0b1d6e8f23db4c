package inspector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serverFrame is a frame as a server sends it: unmasked.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// unmask decodes a client frame (RFC 6455 5.3): the test's side of the
// wire, so that what the client sends is checked byte for byte.
func unmask(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("client frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 == 0 {
		t.Fatalf("client frame %x: not final or not masked", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(r, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(r, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	var mask [4]byte
	io.ReadFull(r, mask[:])
	p := make([]byte, n)
	io.ReadFull(r, p)
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return h[0] & 0x0f, p
}

func TestEncodeFrameLengthsAndMask(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		op, got := unmask(t, bytes.NewReader(encodeFrame(opText, payload, mask)))
		if op != opText || !bytes.Equal(got, payload) {
			t.Errorf("%d bytes: op %d, %d bytes back", n, op, len(got))
		}
	}
	// The mask is applied: the payload is not on the wire in clear.
	if f := encodeFrame(opText, []byte("Runtime.evaluate"), mask); bytes.Contains(f, []byte("Runtime")) {
		t.Error("payload sent unmasked")
	}
}

func TestReadMessage(t *testing.T) {
	ping := serverFrame(true, opPing, []byte("hi"))
	for _, c := range []struct {
		name string
		wire []byte
		want string
		err  string
	}{
		{"text", serverFrame(true, opText, []byte(`{"id":1}`)), `{"id":1}`, ""},
		{"16-bit length", serverFrame(true, opText, bytes.Repeat([]byte("a"), 300)), strings.Repeat("a", 300), ""},
		{"fragments around a ping", append(append(serverFrame(false, opText, []byte("ab")), ping...), serverFrame(true, opContinuation, []byte("cd"))...), "abcd", ""},
		{"close", serverFrame(true, opClose, []byte{0x03, 0xe8}), "", "EOF"},
		{"masked from the server", []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, "", "masked frame"},
		{"reserved bits", []byte{0xc1, 0x00}, "", "reserved bits"},
		{"long control frame", serverFrame(true, opPing, bytes.Repeat([]byte("a"), 126)), "", "bad control frame"},
		{"continuation first", serverFrame(true, opContinuation, []byte("x")), "", "continuation without a message"},
		{"message inside a message", append(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))...), "", "new message inside"},
		// A length the target claims is bounded before anything is allocated.
		{"huge length", append([]byte{0x81, 127}, binary.BigEndian.AppendUint64(nil, 1<<40)...), "", "more than"},
		{"unknown opcode", serverFrame(true, 0x3, nil), "", "unknown opcode"},
	} {
		client, server := net.Pipe()
		go func() {
			server.Write(c.wire)
			// Answer nothing; a pong from the client is read and dropped.
			io.Copy(io.Discard, server)
		}()
		w := &wsConn{c: client, r: bufio.NewReader(client)}
		got, err := w.readMessage()
		client.Close()
		server.Close()
		switch {
		case c.err == "" && (err != nil || string(got) != c.want):
			t.Errorf("%s: %q, %v", c.name, got, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		}
	}
}

func TestParseTargetsKeepsLoopbackNodeTargets(t *testing.T) {
	list := `[
	 {"type":"node","webSocketDebuggerUrl":"ws://127.0.0.1:9229/7f1c"},
	 {"type":"node","webSocketDebuggerUrl":"ws://10.0.0.5:9229/evil"},
	 {"type":"page","webSocketDebuggerUrl":"ws://127.0.0.1:9229/page"}]`
	ts, err := parseTargets(strings.NewReader(list))
	if err != nil || len(ts) != 1 || ts[0].WebSocketDebuggerURL != "ws://127.0.0.1:9229/7f1c" {
		t.Fatalf("%+v %v", ts, err)
	}
	if _, err := parseTargets(strings.NewReader("<html>")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestDecodeResponse(t *testing.T) {
	if _, ok, err := decodeResponse([]byte(`{"method":"Runtime.consoleAPICalled","params":{}}`), 3); ok || err != nil {
		t.Errorf("an event answered: %v %v", ok, err)
	}
	if res, ok, err := decodeResponse([]byte(`{"id":3,"result":{"x":1}}`), 3); !ok || err != nil || string(res) != `{"x":1}` {
		t.Errorf("answer: %s %v %v", res, ok, err)
	}
	if _, ok, err := decodeResponse([]byte(`{"id":3,"error":{"code":-32000,"message":"Cannot find context"}}`), 3); !ok || err == nil || !strings.Contains(err.Error(), "Cannot find context") {
		t.Errorf("error answer: %v %v", ok, err)
	}
	if _, _, err := decodeResponse([]byte(`{"id":`), 3); err == nil {
		t.Error("a broken message accepted")
	}
	req, _ := encodeRequest(7, "Runtime.evaluate", map[string]any{"expression": "1"})
	if string(req) != `{"id":7,"method":"Runtime.evaluate","params":{"expression":"1"}}` {
		t.Errorf("request %s", req)
	}
}

func TestParseOutcomesTrustsOnlyWhatWasAsked(t *testing.T) {
	// The target's answer is untrusted: fds nobody asked about are
	// dropped, a missing one is a failure, an unknown verb too.
	got, err := parseOutcomes(json.RawMessage(`[
	 {"fd":20,"how":"destroyed","owner":"ReadStream","count":1},
	 {"fd":99,"how":"closed"},
	 {"fd":23,"how":"vanished"}]`), []int{20, 23, 29})
	if err != nil {
		t.Fatal(err)
	}
	want := []Outcome{
		{FD: 20, How: "destroyed", Owner: "ReadStream", Count: 1},
		{FD: 23, How: "failed", Error: `unknown outcome "vanished"`},
		{FD: 29, How: "failed", Error: "the target did not answer for this fd"},
	}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("outcome %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestExpectArg(t *testing.T) {
	arg := expectArg([]int{3, 4}, map[int]FileID{4: {Dev: 25, Ino: 1 << 60, Rdev: 136<<8 | 3}})
	b, _ := json.Marshal(arg)
	// Inodes beyond 2^53 survive as strings.
	if string(b) != `[null,{"dev":"25","ino":"1152921504606846976","rdev":"34819"}]` {
		t.Errorf("%s", b)
	}
}

// fakeInspector plays a Node inspector's side of one session on conn, from
// fixture answers, and records the methods the client called. It answers
// the handshake, then each command by its method, and after the command
// that closes the inspector it sends a close frame, as Node does when
// inspector.close() ends the session.
func fakeInspector(t *testing.T, conn net.Conn, answers map[string]string, calls chan<- string) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	req, err := http.ReadRequest(r)
	if err != nil {
		t.Errorf("handshake: %v", err)
		return
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(key)+"\r\n\r\n")
	for {
		op, p := unmask(t, r)
		if op == opClose {
			conn.Write(serverFrame(true, opClose, p))
			return
		}
		var cmd request
		if err := json.Unmarshal(p, &cmd); err != nil {
			t.Errorf("client sent %q", p)
			return
		}
		calls <- cmd.Method
		// An event first: the client must skip it.
		conn.Write(serverFrame(true, opText, []byte(`{"method":"Runtime.executionContextCreated","params":{}}`)))
		res := answers[cmd.Method]
		if cmd.Method == "Runtime.callFunctionOn" && !strings.Contains(string(p), `{"value":[[21],null]}`) {
			t.Errorf("callFunctionOn without the watched fds: %s", p)
		}
		if cmd.Method == "Runtime.evaluate" && strings.Contains(string(p), "setTimeout") && !strings.Contains(string(p), ".unref()") {
			t.Errorf("the dead-man timer would keep the program alive: %s", p)
		}
		// The close: the dead-man timer cleared, inspector.close() once
		// this session is gone.
		if cmd.Method == "Runtime.evaluate" && strings.Contains(string(p), "clearTimeout") && strings.Contains(string(p), "setImmediate") {
			res = `{"result":{"type":"boolean","value":true}}`
			conn.Write(serverFrame(true, opText, []byte(`{"id":`+itoa(cmd.ID)+`,"result":`+res+`}`)))
			conn.Write(serverFrame(true, opClose, []byte{0x03, 0xe8}))
			// The client answers the close; then the server hangs up.
			if op, _ := unmask(t, r); op != opClose {
				t.Errorf("client answered the close with op %d", op)
			}
			return
		}
		conn.Write(serverFrame(true, opText, []byte(`{"id":`+itoa(cmd.ID)+`,"result":`+res+`}`)))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSessionExchangeOnFixtureBytes(t *testing.T) {
	client, server := net.Pipe()
	calls := make(chan string, 16)
	answers := map[string]string{
		"Runtime.evaluate":           `{"result":{"type":"function","objectId":"proto-1"}}`,
		"Runtime.queryObjects":       `{"objects":{"type":"object","objectId":"arr-2"}}`,
		"Runtime.callFunctionOn":     `{"result":{"type":"object","value":[{"fd":20,"how":"destroyed","owner":"ReadStream","count":1},{"fd":29,"how":"closed"}]}}`,
		"Runtime.releaseObjectGroup": `{}`,
	}
	done := make(chan struct{})
	go func() { fakeInspector(t, server, answers, calls); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	client.SetDeadline(deadline)
	ws, err := dialWS(client, "ws://127.0.0.1:9229/7f1c")
	if err != nil {
		t.Fatal(err)
	}
	s := &session{ws: ws, nextID: 1}
	outs, err := s.releaseFDs([]int{20, 29}, nil, map[int][]int{20: {21}}, deadline)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].How != "destroyed" || outs[1].How != "closed" {
		t.Fatalf("outcomes %+v", outs)
	}
	if err := s.closeInspector(); err != nil {
		t.Fatal(err)
	}
	if err := s.ws.awaitServerClose(); err != nil {
		t.Fatal(err)
	}
	client.Close()
	<-done
	close(calls)
	var got []string
	for c := range calls {
		got = append(got, c)
	}
	// The dead-man timer first, the close last.
	want := "Runtime.evaluate Runtime.evaluate Runtime.queryObjects Runtime.callFunctionOn Runtime.releaseObjectGroup Runtime.evaluate"
	if strings.Join(got, " ") != want {
		t.Errorf("calls %v, want %s", got, want)
	}
}

func TestHandshakeRefusesAWrongAccept(t *testing.T) {
	client, server := net.Pipe()
	go func() {
		http.ReadRequest(bufio.NewReader(server))
		io.WriteString(server, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n")
		server.Close()
	}()
	if _, err := dialWS(client, "ws://127.0.0.1:9229/x"); err == nil || !strings.Contains(err.Error(), "Sec-WebSocket-Accept") {
		t.Fatalf("%v", err)
	}
	if _, err := dialWS(nil, "http://127.0.0.1:9229/x"); err == nil {
		t.Fatal("a non-ws URL accepted")
	}
	if !hostIsLoopback("ws://localhost:9229/x") || hostIsLoopback("ws://127.0.0.2:9229/x") || hostIsLoopback("ws://[::1]:9229/x") {
		t.Error("hostIsLoopback")
	}
}

// discardConn is a net.Conn that swallows writes (pongs) and reads nothing.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
