#!/usr/bin/env python3
"""N scripted clients; restart the server; time until all N are back, and the new
server's CPU seconds (utime+stime from /proc) at that moment."""
import json, os, signal, subprocess, sys, tempfile, threading, time

bin_, n = sys.argv[1], int(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
tmp = tempfile.mkdtemp(prefix="t1-storm-")
data = os.path.join(tmp, "srv")

def start_server(listen):
    p = subprocess.Popen([bin_, "server", "--headless", "--listen", listen, "--data-dir", data, "--conns-per-ip", "1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         text=True, env={**os.environ, "RUST_LOG": "warn"})
    first = json.loads(p.stdout.readline())
    state = {"connected": 0, "resumed": 0, "done": threading.Event()}
    def read():
        for line in p.stdout:
            try: v = json.loads(line)
            except ValueError: continue
            if v.get("event") == "client_connected":
                state["connected"] += 1
                state["resumed"] += bool(v.get("resumed"))
                if state["connected"] >= n: state["done"].set()
    threading.Thread(target=read, daemon=True).start()
    return p, first["addr"], state

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

srv, addr, st = start_server("127.0.0.1:0")
clients = []
t0 = time.time()
for i in range(n):
    h = os.path.join(tmp, f"u{i}")
    clients.append(subprocess.Popen(
        [bin_, "chat", "--server", addr, "--user", f"user{i:03}", "--config-dir", h + "/c",
         "--state-dir", h + "/s", "--accept-new"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "LIVEWIRE_PASSWORD": "correct horse battery", "RUST_LOG": "off"}))
import atexit
atexit.register(lambda: [p.kill() for p in clients] and None or srv.kill())
assert st["done"].wait(600), f"only {st['connected']} registered"
print(f"registered {n} in {time.time()-t0:.1f}s, server cpu {cpu(srv.pid):.1f}s")
time.sleep(2)
srv.send_signal(signal.SIGTERM); srv.wait()
t0 = time.time()
srv, addr2, st = start_server(addr)
ok = st["done"].wait(600)
took, c = time.time() - t0, cpu(srv.pid)
print(f"back after restart: {st['connected']}/{n} in {took:.1f}s, resumed {st['resumed']}, server cpu {c:.2f}s")
for p in clients: p.kill()
for p in clients: p.wait()
srv.send_signal(signal.SIGTERM); srv.wait()
