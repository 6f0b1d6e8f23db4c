// A Node program that leaks PTYs the way real ones do, for the inspector
// route's tests: idle pty.open() terminals (master and slave each owned by
// a live tty.ReadStream) and a master opened with fs.openSync that no
// stream owns. It keeps serving HTTP on 127.0.0.1 and spawning PTYs on
// request. Every event is one JSON line on stdout.
//
// Never call destroy() on a pty.open() terminal: its pid is -1 and node-pty
// would run kill(-1, SIGHUP).
'use strict';
const pty = require('@lydell/node-pty');
const http = require('http');
const fs = require('fs');

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const n = Number(process.argv[2] || 3);

const terms = [];
for (let i = 0; i < n; i++) {
  const t = pty.open({});
  const master = t._fd, slave = t._slave._handle.fd;
  t._master.on('close', () => say({ event: 'close', side: 'master', fd: master }));
  t._slave.on('close', () => say({ event: 'close', side: 'slave', fd: slave }));
  terms.push({ master, slave });
}
const raw = fs.openSync('/dev/ptmx', 'r+');

let hits = 0;
const server = http.createServer((req, res) => { hits++; res.end(String(hits)); });
server.listen(0, '127.0.0.1', () => {
  say({ event: 'ready', pid: process.pid, port: server.address().port, terms, raw });
});

process.stdin.setEncoding('utf8');
process.stdin.on('data', (line) => {
  if (line.trim() === 'spawn') {
    const p = pty.spawn('/bin/sh', ['-c', 'echo spawned-ok'], {});
    p.onData((d) => { if (d.includes('spawned-ok')) say({ event: 'spawned' }); });
  }
});
process.on('uncaughtException', (e) => { say({ event: 'exception', error: String(e) }); });
process.on('exit', (code) => say({ event: 'exit', code }));
