package inspector

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// The inspector speaks the Chrome DevTools Protocol over a WebSocket
// (RFC 6455). This is the small client part of it that CDP needs: one
// connection, text messages, pings answered, a close. Frames from the
// target are untrusted input: their lengths are bounded before anything
// is allocated.

// maxMessage bounds one message from the inspector; the answers we wait
// for are a few hundred bytes.
const maxMessage = 1 << 20

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Frame opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// wsConn is a client WebSocket connection.
type wsConn struct {
	c net.Conn
	r *bufio.Reader
}

// dialWS opens a WebSocket on an established TCP connection to the
// endpoint rawURL names (ws://127.0.0.1:9229/<id>).
func dialWS(c net.Conn, rawURL string) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("not a ws:// URL: %q", rawURL)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return nil, errors.New("websocket handshake: wrong Sec-WebSocket-Accept")
	}
	return &wsConn{c: c, r: r}, nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// encodeFrame builds one final client frame; clients must mask (RFC 6455
// 5.3).
func encodeFrame(op byte, payload []byte, mask [4]byte) []byte {
	b := []byte{0x80 | op}
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

func (w *wsConn) send(op byte, payload []byte) error {
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return err
	}
	_, err := w.c.Write(encodeFrame(op, payload, mask))
	return err
}

// frame is one decoded frame.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame decodes one frame from a server, which must not mask.
func readFrame(r io.Reader, limit int) (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f}
	if h[0]&0x70 != 0 {
		return frame{}, errors.New("websocket: reserved bits set")
	}
	if h[1]&0x80 != 0 {
		return frame{}, errors.New("websocket: masked frame from the server")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if f.op >= opClose && (n > 125 || !f.fin) {
		return frame{}, errors.New("websocket: bad control frame")
	}
	if n > uint64(limit) {
		return frame{}, fmt.Errorf("websocket: frame of %d bytes, more than %d", n, limit)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, err
	}
	return f, nil
}

// readMessage returns the next text message, answering pings and joining
// fragments, within maxMessage bytes in all.
func (w *wsConn) readMessage() ([]byte, error) {
	var msg []byte
	started := false
	for {
		f, err := readFrame(w.r, maxMessage-len(msg))
		if err != nil {
			return nil, err
		}
		switch f.op {
		case opPing:
			if err := w.send(opPong, f.payload); err != nil {
				return nil, err
			}
			continue
		case opPong:
			continue
		case opClose:
			return nil, io.EOF
		case opText, opBinary:
			if started {
				return nil, errors.New("websocket: new message inside a fragmented one")
			}
			started = true
		case opContinuation:
			if !started {
				return nil, errors.New("websocket: continuation without a message")
			}
		default:
			return nil, fmt.Errorf("websocket: unknown opcode %d", f.op)
		}
		msg = append(msg, f.payload...)
		if f.fin {
			return msg, nil
		}
	}
}

// awaitServerClose waits, reading and dropping whatever comes, for the
// server to close the connection: a close frame (answered as RFC 6455
// 5.5.1 asks) or the end of the stream. The inspector is closed from
// inside the target while this session is still connected; closing from
// our side at the same time races Node's own teardown of the connection
// (seen on Node 20: a SIGSEGV in the inspector's I/O thread, which kills
// the program), so the client never closes first on this path.
func (w *wsConn) awaitServerClose() error {
	for {
		f, err := readFrame(w.r, maxMessage)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch f.op {
		case opPing:
			if err := w.send(opPong, f.payload); err != nil {
				return err
			}
		case opClose:
			_ = w.send(opClose, f.payload)
			// The server closes TCP once it has our answer.
			for {
				if _, err := readFrame(w.r, maxMessage); err != nil {
					return nil
				}
			}
		}
	}
}

// close says goodbye and closes the connection.
func (w *wsConn) close() error {
	_ = w.send(opClose, []byte{0x03, 0xe8}) // 1000: normal closure
	return w.c.Close()
}

// hostIsLoopback reports whether a ws:// URL points at 127.0.0.1, the only
// address the inspector route ever talks to.
func hostIsLoopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	return host == "127.0.0.1" || strings.EqualFold(host, "localhost")
}
