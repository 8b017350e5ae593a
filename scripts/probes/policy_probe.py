#!/usr/bin/env python3
"""Servers and probes for the network policy tests, run inside a pod's
network namespace.

  serve --tcp 80,81 --udp 53 [--sctp 9000]
                                 TCP (and SCTP) servers that greet ("ok") and
                                 echo, UDP servers that echo; prints "ready"
  probe [--timeout S] T...       T is PROTO,ADDRESS,PORT (tcp, udp, sctp);
                                 all at once; prints "T open" or "T closed"
  session                        reads lines of targets from stdin, probes
                                 each line at once, prints results, "done"
  early [--timeout S] T...       started before the pod has an address: tries
                                 each T until the network lets it try (not
                                 unreachable), so the first real attempt is
                                 made as the interface comes up, then again
                                 for 2 s or until one connects; prints
                                 "T open|closed FIRST-ATTEMPT-MONOTONIC ATTEMPTS"
  watch [--timeout S] SECONDS T  probes T again and again for SECONDS; prints
                                 how many attempts passed and failed
"""
import errno
import time
import socket
import sys
import threading


def family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def serve(tcp, udp, sctp=()):
    def tcp_server(port, proto=0):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, proto)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(128)
        ready.release()
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn):
        try:
            conn.sendall(b"ok")
            while True:
                data = conn.recv(64)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def udp_server(port):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        ready.release()
        while True:
            data, peer = s.recvfrom(64)
            s.sendto(data, peer)

    ready = threading.Semaphore(0)
    for p in tcp:
        threading.Thread(target=tcp_server, args=(p,), daemon=True).start()
    for p in udp:
        threading.Thread(target=udp_server, args=(p,), daemon=True).start()
    for p in sctp:
        threading.Thread(target=tcp_server, args=(p, socket.IPPROTO_SCTP), daemon=True).start()
    for _ in list(tcp) + list(udp) + list(sctp):
        ready.acquire()
    print("ready", flush=True)
    threading.Event().wait()


def probe_one(target, timeout):
    proto, address, port = target.split(",")
    port = int(port)
    try:
        if proto in ("tcp", "sctp"):
            kind = socket.IPPROTO_SCTP if proto == "sctp" else 0
            with socket.socket(family(address), socket.SOCK_STREAM, kind) as s:
                s.settimeout(timeout)
                s.connect((address, port))
                return s.recv(2) == b"ok"
        with socket.socket(family(address), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(b"ping", (address, port))
            data, _ = s.recvfrom(64)
            return data == b"ping"
    except OSError:
        return False


def each_at_once(targets, work):
    """Runs work(target) for every target at once; their results by target."""
    results = {}

    def run(t):
        results[t] = work(t)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def probe(targets, timeout):
    results = each_at_once(targets, lambda t: probe_one(t, timeout))
    for t in targets:
        print(t, "open" if results[t] else "closed", flush=True)


UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EINVAL}


def early(targets, timeout, duration=2.0):
    def run(target):
        proto, address, port = target.split(",")
        deadline = time.monotonic() + 20
        first = None
        opened = False
        attempts = 0
        while time.monotonic() < deadline and (first is None or time.monotonic() < first + duration):
            started = time.monotonic()
            with socket.socket(family(address), socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                try:
                    s.connect((address, int(port)))
                    opened = opened or s.recv(2) == b"ok"
                except OSError as e:
                    if e.errno in UNREACHABLE and first is None:
                        time.sleep(0.0005)
                        continue
            if first is None:
                first = started
            attempts += 1
            if opened:
                break
        return ("open" if opened else "closed" if first else "never-tried", first or 0, attempts)

    results = each_at_once(targets, run)
    for t in targets:
        print(t, results[t][0], "%.6f" % results[t][1], results[t][2], flush=True)


def watch(seconds, target, timeout):
    passed = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if probe_one(target, timeout):
            passed += 1
        else:
            failed += 1
        time.sleep(0.005)
    print("passed", passed, "failed", failed, flush=True)


def hold(address, port):
    s = socket.socket(family(address), socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((address, int(port)))
    assert s.recv(2) == b"ok"
    print("connected", flush=True)
    while sys.stdin.readline():
        try:
            s.sendall(b"x")
            print("alive" if s.recv(1) == b"x" else "dead", flush=True)
        except OSError as e:
            print("dead", e, flush=True)


def main(argv):
    if not argv:
        sys.exit(__doc__)
    command, rest = argv[0], argv[1:]
    timeout = 1.0
    if rest[:1] == ["--timeout"]:
        timeout, rest = float(rest[1]), rest[2:]
    if command == "serve":
        opts = dict(zip(rest[::2], rest[1::2]))
        ports = lambda k: [int(p) for p in opts.get(k, "").split(",") if p]
        serve(ports("--tcp"), ports("--udp"), ports("--sctp"))
    elif command == "probe":
        probe(rest, timeout)
    elif command == "session":
        for line in sys.stdin:
            probe(line.split(), timeout)
            print("done", flush=True)
    elif command == "early":
        early(rest, timeout)
    elif command == "watch":
        watch(float(rest[0]), rest[1], timeout)
    elif command == "hold":
        hold(rest[0], rest[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
