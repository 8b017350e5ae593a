"""What the benchmark scripts share: running commands, the machine line every
table starts with, and writing a script's table into docs/benchmarks.md.

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from benchlib import sh, machine_line, report
"""
import contextlib, io, json, os, platform, subprocess, sys, time

REF_DIR = "/usr/lib/cni"


def sh(*args, check=True, **kw):
    """Runs `args` (no shell), capturing stdout and stderr as text; env,
    input and cwd pass through to subprocess.run."""
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def machine_line(extra=""):
    line = f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}"
    return line + (f"; {extra}" if extra else "")


def require_root(name):
    if os.geteuid() != 0:
        sys.exit(f"{name}: run as root (it creates namespaces and bridges)")


def write_section(path, name, text):
    """Puts `text` between `<!-- NAME: begin -->` and `<!-- NAME: end -->` in
    `path` (the prose around them is kept by hand); a file without the
    markers gets them, with the text, at its end."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if begin in old and end in old:
        new = old[:old.index(begin) + len(begin)] + "\n" + text.rstrip("\n") + "\n" + old[old.index(end):]
    else:
        new = old.rstrip("\n") + f"\n\n## Last run of {name}\n\n{begin}\n{text.rstrip()}\n{end}\n"
    with open(path, "w") as f:
        f.write(new)


class _Tee(io.TextIOBase):
    def __init__(self, out):
        self.out, self.buffer_text = out, io.StringIO()

    def write(self, s):
        self.out.write(s)
        self.buffer_text.write(s)
        return len(s)

    def flush(self):
        self.out.flush()


def report(name, main):
    """Runs `main()`; with `--markdown PATH` among the arguments (taken out
    before `main` parses them) what it prints also goes into PATH's section
    `name` (the scripts print markdown tables). bench.sh passes it to every script."""
    path = None
    if "--markdown" in sys.argv:
        i = sys.argv.index("--markdown")
        path = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    if path is None:
        return main()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        result = main()
    write_section(path, name, tee.buffer_text.getvalue())
    return result


class BridgePlugin:
    """One bridge plugin on a bridge of its own, exec'd as a runtime does.
    Each with its own IPAM, as bench.py measures them: berth-ipam in-process
    for `berth`, host-local exec'd for the reference `bridge`. `extra` is
    merged into the config."""

    def __init__(self, directory, plugin, bridge, subnet, data, extra=None):
        ipam = "berth-ipam" if plugin == "berth" else "host-local"
        config = {"cniVersion": "1.0.0", "name": f"bench-{bridge}", "type": plugin, "bridge": bridge, "isGateway": True,
                  "ipam": {"type": ipam, "subnet": subnet, "dataDir": data}}
        config.update(extra or {})
        self.name = config["name"]
        self.config = config
        self.path = f"{directory}/{plugin}"
        self.env = dict(os.environ, CNI_IFNAME="eth0", CNI_PATH=f"{directory}:{REF_DIR}")

    def environment(self, command, ns, cid, name=None, ifname="eth0"):
        env = dict(self.env, CNI_COMMAND=command, CNI_NETNS=f"/run/netns/{ns}", CNI_CONTAINERID=cid, CNI_IFNAME=ifname)
        if name:
            env["CNI_ARGS"] = f"K8S_POD_NAME={name}"
        return env

    def run(self, command, ns, cid, name=None, aliases=None, ifname="eth0"):
        """Runs the plugin; returns (seconds, parsed stdout or None). A failure raises."""
        config = dict(self.config)
        if aliases:
            config["args"] = {"cni": {"aliases": aliases}}
        start = time.perf_counter()
        p = subprocess.run([self.path], input=json.dumps(config), env=self.environment(command, ns, cid, name, ifname),
                           capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if p.returncode != 0:
            raise RuntimeError(f"{self.path} {command} failed: {p.stdout} {p.stderr}")
        return elapsed, (json.loads(p.stdout) if p.stdout.strip() else None)
