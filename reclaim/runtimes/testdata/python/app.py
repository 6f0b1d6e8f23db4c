"""An asyncio program that leaks PTYs the way real ones do (issue 9).

Run with Debian's /usr/bin/python3. Leaks: a master registered with
loop.add_reader whose callback is naive (no handling of OSError: every EIO
is a traceback), with its slave open in the same process; and an idle pair
registered only later. A live terminal (cat) must keep its data. Serves
HTTP on 127.0.0.1. Events go as JSON lines to $EVENTS. With
IGNORE_EOF=1 the reader is naiver still: it ignores an empty read (as code
written for PTYs, whose end is EIO, often does), so a replacement that
reads EOF makes its loop spin.
"""
import asyncio
import atexit
import json
import os
import subprocess
import sys
import time

EVENTS = open(os.environ["EVENTS"], "a", buffering=1)
IGNORE_EOF = os.environ.get("IGNORE_EOF") == "1"
logged = 0


def ev(kind, **kw):
    global logged
    kw = {"ev": kind, "t": time.time_ns(), **kw}
    # A storm is counted, not all written; exit and close always are.
    logged += 1
    if logged <= 10000 or kind in ("exit", "close"):
        EVENTS.write(json.dumps(kw) + "\n")


exit_code = [None]
atexit.register(lambda: ev("exit", code=exit_code[0]))


def on_exception(loop, context):
    # Counts what asyncio would print as a traceback.
    exc = context.get("exception")
    ev("exception", msg=f"{context.get('message')}: {exc!r}"[:300])


def naive_reader(loop, name, master, slave):
    """Reads like most code does: EOF closes, errors are not expected."""
    ev("leak", name=name + ".master", fd=master, closes=not IGNORE_EOF)
    ev("leak", name=name + ".slave", fd=slave, closes=not IGNORE_EOF)
    state = {"open": True}

    def on_readable():
        data = os.read(master, 1024)  # OSError (EIO) propagates
        if data:
            ev("read", fd=master, n=len(data))
            return
        if IGNORE_EOF:
            return
        ev("readend", fd=master, err="EOF")
        state["open"] = False
        loop.remove_reader(master)
        os.close(master)
        ev("close", name=name + ".master", fd=master)
        os.close(slave)
        ev("close", name=name + ".slave", fd=slave)

    loop.add_reader(master, on_readable)
    return on_readable, state


class Live:
    """A terminal running cat: its data must survive."""

    def __init__(self, loop):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(["cat"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.buf = b""
        self.waiters = []
        loop.add_reader(self.master, self.on_readable)

    def on_readable(self):
        self.buf += os.read(self.master, 4096)
        for word, fut in list(self.waiters):
            if word in self.buf and not fut.done():
                fut.set_result(None)

    async def echo(self, word):
        word = word.encode()
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append((word, fut))
        os.write(self.master, word + b"\n")
        try:
            await asyncio.wait_for(fut, 10)
            return None
        except asyncio.TimeoutError:
            return f"no echo of {word!r}"


async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(on_exception)
    live = Live(loop)
    if await live.echo("before"):
        raise SystemExit(70)
    m, s = os.openpty()
    reader_cb, reader = naive_reader(loop, "reader", m, s)
    late = os.openpty()
    counter = [0]
    stop = loop.create_future()

    async def exercise():
        errors, steps = [], []

        def check(what, err):
            steps.append(what)
            if err:
                errors.append(f"{what}: {err}")

        await asyncio.sleep(0.3)
        # Re-arm: remove the reader and add it again, if it is still open.
        if reader["open"]:
            loop.remove_reader(m)
            try:
                loop.add_reader(m, reader_cb)
                check("reader re-arm", None)
            except OSError as e:
                check("reader re-arm", repr(e))
        else:
            check("reader closed itself", None)
        # The idle pair is registered only now.
        try:
            naive_reader(loop, "late", *late)
            check("late add_reader", None)
        except OSError as e:
            check("late add_reader", repr(e))
        await asyncio.sleep(0.3)
        check("live echo", await live.echo("after"))
        n = Live(loop)
        check("new pty echo", await n.echo("fresh"))
        loop.remove_reader(n.master)
        os.close(n.master)
        n.proc.kill()
        n.proc.wait()
        return {"ok": not errors, "errors": errors, "steps": steps}

    async def serve(reader, writer):
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = line.split()[1].decode() if len(line.split()) > 1 else "/"
            status, body = 200, ""
            if path == "/count":
                body = str(counter[0])
                counter[0] += 1
            elif path == "/exercise":
                body = json.dumps(await exercise())
            elif path.startswith("/exit"):
                exit_code[0] = int(path.split("code=")[1])
                body = "bye"
                stop.set_result(exit_code[0])
            else:
                status = 404
            data = body.encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    code = await stop
    await asyncio.sleep(0.05)
    server.close()
    loop.remove_reader(live.master)
    live.proc.kill()
    live.proc.wait()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
