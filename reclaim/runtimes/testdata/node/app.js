'use strict';
// A Node app that leaks PTYs the way real ones do (issue 9), keeps working,
// and after a release exercises the paths that break. Events go as JSON
// lines to $EVENTS. Run it only inside `unshare --pid --fork`: node-pty's
// destroy() of a pty.open() terminal runs kill(-1, SIGHUP) (this app never
// calls it, but a mistake must not reach the machine).
//
// Leaks: two pty.open() terminals kept idle (both ends are tty.ReadStreams
// in this loop: one flowing, one paused), and a spawned terminal killed
// without destroy() whose master a helper child inherited (node-pty masters
// are not close-on-exec). A live terminal (cat) must keep its data.
const pty = require('@lydell/node-pty');
const cp = require('child_process');
const fs = require('fs');
const http = require('http');

const evfd = fs.openSync(process.env.EVENTS, 'a');
let logged = 0;
function ev(kind, o) {
  o = Object.assign({ ev: kind, t: Math.round((performance.timeOrigin + performance.now()) * 1e6) }, o || {});
  // A storm is counted, not all written; exit and close always are.
  if (logged++ < 10000 || kind === 'exit' || kind === 'close') fs.writeSync(evfd, JSON.stringify(o) + '\n');
}
process.on('uncaughtException', (e) => ev('exception', { msg: String(e && e.stack || e).slice(0, 500) }));
process.on('exit', (code) => ev('exit', { code }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// echo writes a line into a terminal running cat and waits for it to come
// back: the terminal's data path is whole.
function echo(term, word) {
  return new Promise((resolve) => {
    let seen = '';
    const timer = setTimeout(() => { sub.dispose(); resolve(`no echo of ${word} (got ${JSON.stringify(seen)})`); }, 10000);
    const sub = term.onData((d) => {
      seen += d;
      if (seen.includes(word)) { clearTimeout(timer); sub.dispose(); resolve(null); }
    });
    term.write(word + '\r');
  });
}

function watchClose(name, stream) {
  const fd = stream._handle.fd;
  ev('leak', { name, fd, closes: true });
  stream.on('close', () => ev('close', { name, fd }));
  stream.on('end', () => ev('end', { name, fd }));
}

async function main() {
  const live = pty.spawn('/bin/cat', [], {});
  const killed = pty.spawn('/bin/sleep', ['100000'], {});
  const exited = new Promise((r) => killed.onExit(r));
  // A long-lived helper started now inherits both masters.
  const helper = cp.spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  killed.kill(); // no destroy(): node-pty drops its own copy 200 ms later
  await exited;
  await sleep(500);

  const flowing = pty.open({});
  const paused = pty.open({});
  // Backpressure: data arrives while paused, so libuv stops reading
  // (uv_read_stop) and must re-arm the fd with epoll_ctl on resume.
  paused.pause();
  fs.writeSync(paused._slave._handle.fd, 'unread\n');
  const leaked = { flowing, paused };
  for (const [name, t] of Object.entries(leaked)) {
    watchClose(name + '.master', t._master);
    watchClose(name + '.slave', t._slave);
  }
  let err = await echo(live, 'before');
  if (err) throw new Error(err);

  let counter = 0;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/count') return res.end(String(counter++));
    if (url.pathname === '/exit') {
      const code = Number(url.searchParams.get('code'));
      res.end('bye');
      helper.kill();
      server.close();
      return setTimeout(() => process.exit(code), 50);
    }
    if (url.pathname === '/exercise') {
      const r = await exercise(live, leaked);
      return res.end(JSON.stringify(r));
    }
    res.statusCode = 404;
    res.end();
  });
  server.listen(0, '127.0.0.1', () => {
    ev('ready', { helper: helper.pid });
    console.log(`ready ${server.address().port}`);
  });
}

async function exercise(live, leaked) {
  const errors = [];
  const steps = [];
  const check = (what, e) => { steps.push(what); if (e) errors.push(`${what}: ${e}`); };
  await sleep(300); // let a hang-up reach the loop
  for (const [name, t] of Object.entries(leaked)) {
    // A careful app writes only to a terminal it has not seen close.
    if (!t._master.destroyed) {
      try { t.write('x'); } catch (e) { check(`${name} write`, String(e)); }
    }
    // Read stop and start exactly as Node does them under backpressure
    // (net.js onStreamRead, tryReadStart): libuv re-arms the fd with
    // epoll_ctl. Then pause and resume (a stream that was stopped with
    // data pending, as the paused one is, re-arms on resume).
    for (const s of [t._master, t._slave]) {
      const h = s._handle;
      if (h && h.reading && !s.destroyed) {
        h.reading = false; h.readStop(); await sleep(20);
        if (!s.destroyed) { h.reading = true; const e = h.readStart(); if (e) check(`${name} readStart`, `error ${e}`); }
        await sleep(20);
      }
      s.pause(); await sleep(20); s.resume(); await sleep(20);
    }
    check(`${name} pause/resume`, null);
  }
  await sleep(300);
  check('live echo', await echo(live, 'after'));
  live.pause(); await sleep(20); live.resume();
  check('live echo after pause/resume', await echo(live, 'resumed'));
  // New spawns keep working; destroy() is for spawned terminals only.
  for (const how of ['kill', 'destroy']) {
    const n = pty.spawn('/bin/cat', [], {});
    check(`new spawn echo (${how})`, await echo(n, 'fresh-' + how));
    const exited = new Promise((r) => n.onExit(r));
    n[how]();
    const e = await Promise.race([exited, sleep(10000).then(() => null)]);
    check(`new spawn ${how} exits`, e ? null : 'no exit event');
  }
  global.gc();
  await sleep(100);
  check('gc', null);
  const exited = new Promise((r) => live.onExit(r));
  live.destroy();
  check('live destroy exits', (await Promise.race([exited, sleep(10000).then(() => null)])) ? null : 'no exit event');
  return { ok: errors.length === 0, errors, steps };
}

main().catch((e) => { ev('exception', { msg: String(e.stack || e) }); process.exit(70); });
