'use strict';
// The README's example: a Node app that leaks watched PTYs the way agent
// back ends do (pty.open() terminals it never uses again, both ends
// tty.ReadStreams in its event loop) and logs when its own code closes
// one. Run it inside `unshare --pid --fork` as the tests do (node-pty's
// destroy() of a pty.open() terminal signals every process; this app never
// calls it).
const pty = require('@lydell/node-pty');
const http = require('http');

const n = Number(process.argv[2] || 3);
for (let i = 0; i < n; i++) {
  const t = pty.open({});
  for (const [end, s] of [['master', t._master], ['slave', t._slave]]) {
    const fd = s._handle.fd;
    s.on('close', () => console.log(`app: terminal ${i} ${end} (fd ${fd}) closed by its close handler`));
  }
}
let served = 0;
http.createServer((req, res) => res.end(`request ${++served}\n`)).listen(0, '127.0.0.1', function () {
  console.log(`app: pid ${process.pid}, ${n} idle terminals, serving on port ${this.address().port}`);
});
