"""`make image-check`: build the real Dockerfile and run every role from the image, as root.

These machines have no Docker engine and cannot pull from a public image registry, so:

1. The base: a stand-in for `python:3.11-slim-bookworm`, built once and cached under
   SAW_IMAGE_WORK: `debootstrap --variant=minbase bookworm` with Debian's python3.11, Python
   bridged into /usr/local/bin as in the official image (the Dockerfile is not changed for it),
   made an image with `buildah from scratch` + `copy` + `commit`.
2. The build: `buildah bud --isolation chroot --storage-driver vfs` of the repository's
   Dockerfile with `--build-arg PYTHON_IMAGE=<the stand-in>` (the digest-pinned default is what
   a real build uses); its time and the image's size are printed.
3. The run: the image's root filesystem mounted read-only, a tmpfs on /tmp, and each role
   (sandbox, worker, ingress, monitor, console) started in it by chroot as uid/gid 10001 with no
   capabilities and no_new_privs, with the image's own environment, on loopback ports, against a
   redis-server of this check. Each role's health endpoint must answer 200, then one event goes
   in through the ingress and must come out applied by the worker at the sandbox.

Run: `make image-check` (sudo-less root; about 3 to 6 minutes, most of it the first base and the
vfs copies). Exit 0 only if everything above held.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("SAW_IMAGE_WORK", "/var/tmp/saw-image"))
BASE = "localhost/saw-standin-python:3.11-bookworm"
IMAGE = "localhost/subaccount-worker:check"
UID = 10001
PACKAGES = [
    "python3.11",
    "python3.11-venv",
    "python3-distutils",
    "python3-lib2to3",
    "python3-pip-whl",
    "python3-setuptools-whl",
    "ca-certificates",
]
MIRROR = os.environ.get("SAW_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PREFIX = "imagecheck"
API_KEY = "image-check-throwaway-key"
TOKEN = "image-check-ingress-token-0123456789"
CONSOLE_TOKEN = "image-check-console-token-0123456789"


def say(message: str) -> None:
    print(f"--- {message}", flush=True)


def buildah(*args: str) -> str:
    """buildah on this check's own vfs storage (never the machine's default storage)."""
    argv = ["buildah", "--storage-driver", "vfs", "--root", str(WORK / "storage")]
    argv += ["--runroot", str(WORK / "runroot"), *args]
    return subprocess.run(argv, check=True, text=True, capture_output=True).stdout.strip()


def image_exists(name: str) -> bool:
    argv = ["buildah", "--storage-driver", "vfs", "--root", str(WORK / "storage")]
    argv += ["--runroot", str(WORK / "runroot"), "inspect", "--type", "image", name]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


# --- 1. the stand-in base --------------------------------------------------------------------


def standin_base() -> None:
    """The stand-in python base image (cached: built once per SAW_IMAGE_WORK)."""
    if image_exists(BASE):
        say(f"stand-in base {BASE}: cached")
        return
    rootfs = WORK / "rootfs"
    if not rootfs.exists():
        started = time.monotonic()
        partial = WORK / "rootfs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        include = ",".join(PACKAGES)
        argv = ["debootstrap", "--variant=minbase", f"--include={include}", "bookworm"]
        subprocess.run([*argv, str(partial), MIRROR], check=True, stdout=subprocess.DEVNULL)
        partial.rename(rootfs)
        say(f"debootstrap bookworm minbase + python3.11: {time.monotonic() - started:.0f} s")
    _bridge_python(rootfs)
    started = time.monotonic()
    container = buildah("from", "scratch")
    buildah("copy", container, str(rootfs), "/")
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for env in (f"PATH={path}", "LANG=C.UTF-8", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"):
        buildah("config", "--env", env, container)
    buildah("config", "--cmd", "python3", container)
    buildah("commit", "--quiet", "--rm", container, BASE)
    say(f"stand-in base committed as {BASE}: {time.monotonic() - started:.0f} s")


def _bridge_python(rootfs: Path) -> None:
    """Python where the official image has it (/usr/local/bin), and this machine's CA bundle
    (its egress to PyPI goes through a TLS proxy; the real base needs nothing of the kind)."""
    local = rootfs / "usr" / "local" / "bin"
    local.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", "python3.11"):
        link = local / name
        if not link.is_symlink():
            link.symlink_to("/usr/bin/python3.11")
    shutil.copyfile(
        "/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt"
    )


# --- 2. the build ----------------------------------------------------------------------------


def build() -> tuple[float, str]:
    """Build the Dockerfile on the stand-in; (seconds, the last lines of the log)."""
    started = time.monotonic()
    log = WORK / "build.log"
    argv = ["bud", "--isolation", "chroot", "--build-arg", f"PYTHON_IMAGE={BASE}"]
    argv += ["-f", str(ROOT / "Dockerfile"), "-t", IMAGE, str(ROOT)]
    with log.open("w") as out:
        base = ["buildah", "--storage-driver", "vfs", "--root", str(WORK / "storage")]
        base += ["--runroot", str(WORK / "runroot")]
        done = subprocess.run(base + argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    tail = "\n".join(log.read_text().splitlines()[-6:])
    if done.returncode != 0:
        raise SystemExit(f"image build failed (log: {log}):\n{tail}")
    return time.monotonic() - started, tail


def image_size() -> str:
    return buildah("images", "--format", "{{.Size}}", IMAGE).splitlines()[0]


def image_config() -> dict[str, Any]:
    """The image's OCI config: Env, Entrypoint, User, WorkingDir."""
    raw = buildah("inspect", "--type", "image", IMAGE)
    return dict(json.loads(raw)["OCIv1"]["config"])


# --- 3. the roles, read-only as uid 10001 ------------------------------------------------------


@contextlib.contextmanager
def readonly_root() -> Iterator[Path]:
    """The image's root filesystem, read-only, with /tmp, /proc and /dev mounted in it."""
    container = buildah("from", "--quiet", IMAGE)
    mounted = Path(buildah("mount", container))
    root = Path(tempfile.mkdtemp(prefix="saw-image-root-"))
    mounts: list[Path] = []
    try:
        _mount("--bind", str(mounted), str(root))
        mounts.append(root)
        _mount("-o", "remount,bind,ro", str(root))
        for target, args in (
            ("tmp", ["-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs"]),
            ("proc", ["-t", "proc", "proc"]),
            ("dev", ["--rbind", "/dev"]),
        ):
            _mount(*args, str(root / target))
            mounts.append(root / target)
        yield root
    finally:
        for point in reversed(mounts):
            subprocess.run(["umount", "-R", "-l", str(point)], check=False)
        root.rmdir()
        buildah("umount", container)
        buildah("rm", container)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _as_app_user(root: Path) -> Callable[[], None]:
    """chroot into `root`, then become 10001:10001 with no capabilities and no_new_privs."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        os.chroot(root)
        os.chdir("/app")
        os.setgroups([])
        os.setgid(UID)
        os.setuid(UID)  # from root to non-root: every capability is dropped
        pr_set_no_new_privs = 38
        if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")

    return enter


class Roles:
    """The roles started from the read-only image, each a process of its own."""

    def __init__(self, root: Path, config: dict[str, Any], logs: Path) -> None:
        self.root = root
        self.env = dict(e.split("=", 1) for e in config.get("Env", []))
        self.entrypoint = list(config.get("Entrypoint") or [])
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        out = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            self.entrypoint + args,
            env={**self.env, **env},
            preexec_fn=_as_app_user(self.root),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def confined(self) -> dict[str, str]:
        """Each role's uid/gid, effective capabilities and no_new_privs, from /proc."""
        seen = {}
        for name, proc in self.procs.items():
            fields = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            )
            uid, gid = fields["Uid"].split()[0], fields["Gid"].split()[0]
            caps, nnp = fields["CapEff"].strip(), fields["NoNewPrivs"].strip()
            if (uid, gid, int(caps, 16), nnp) != (str(UID), str(UID), 0, "1"):
                raise SystemExit(f"{name} is not confined: uid {uid} gid {gid} caps {caps}")
            seen[name] = f"uid={uid} gid={gid} CapEff={caps} NoNewPrivs={nnp}"
        return seen

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        return codes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, redis.RedisError):
            if check():
                return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def status(url: str) -> int:
    return httpx.get(url, timeout=3).status_code


def run_roles(root: Path, config: dict[str, Any], redis_url: str, logs: Path) -> None:
    ports = {
        name: free_port()
        for name in ("sandbox", "worker", "ingress", "ingress-metrics", "monitor", "console")
    }
    common = {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_KEY_PREFIX": PREFIX,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"http://127.0.0.1:{ports['sandbox']}/v6",
        "SUBACCOUNT_WORKER_API_KEY": API_KEY,
        "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
    }
    roles = Roles(root, config, logs)
    try:
        roles.start(
            "sandbox",
            ["sandbox", "--host", "127.0.0.1", "--port", str(ports["sandbox"])],
            {"SUBACCOUNT_WORKER_API_KEY": API_KEY},
        )
        roles.start(
            "worker",
            ["worker", "--processes", "1", "--threads", "4"],
            {
                **common,
                "SUBACCOUNT_WORKER_METRICS_HOST": "127.0.0.1",
                "SUBACCOUNT_WORKER_METRICS_PORT": str(ports["worker"]),
                "SUBACCOUNT_WORKER_METRICS_DIR": "/tmp/saw-metrics",
            },
        )
        roles.start(
            "ingress",
            ["ingress", "--host", "127.0.0.1", "--port", str(ports["ingress"])],
            {
                **common,
                "SUBACCOUNT_WORKER_INGRESS_TOKENS": TOKEN,
                "SUBACCOUNT_WORKER_INGRESS_METRICS_PORT": str(ports["ingress-metrics"]),
            },
        )
        roles.start(
            "monitor",
            ["monitor"],
            {
                **common,
                "SUBACCOUNT_WORKER_MONITOR_HOST": "127.0.0.1",
                "SUBACCOUNT_WORKER_MONITOR_PORT": str(ports["monitor"]),
            },
        )
        roles.start(
            "console",
            ["console", "--host", "127.0.0.1", "--port", str(ports["console"])],
            {
                **common,
                "SUBACCOUNT_WORKER_CONSOLE_TOKENS": f"ops:viewer:{CONSOLE_TOKEN}",
                "SUBACCOUNT_WORKER_CONSOLE_SECRET": "image-check-console-secret-0123456789",
            },
        )
        health = {
            "sandbox": f"http://127.0.0.1:{ports['sandbox']}/_sandbox/health",
            "worker": f"http://127.0.0.1:{ports['worker']}/healthz",
            "ingress": f"http://127.0.0.1:{ports['ingress']}/readyz",
            "monitor": f"http://127.0.0.1:{ports['monitor']}/healthz",
            "console": f"http://127.0.0.1:{ports['console']}/healthz",
        }
        for name, url in health.items():
            started = time.monotonic()
            wait_for(
                f"{name} health ({url}); log: {logs}/{name}.log",
                lambda url=url: status(url) == 200,
                timeout_s=120,
            )
            say(f"{name}: {url.rsplit('/', 1)[-1]} 200 ({time.monotonic() - started:.1f} s)")
        for name, line in roles.confined().items():
            say(f"{name}: {line}")
        _read_only(root)
        end_to_end(ports, redis_url)
    finally:
        codes = roles.stop()
        say(f"exit codes after SIGTERM: {codes}")


def _read_only(root: Path) -> None:
    """The image's root is mounted read-only (only /tmp is writable)."""
    options = next(
        line.split()[3].split(",")
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1] == str(root)
    )
    if "ro" not in options:
        raise SystemExit(f"the root filesystem is mounted {options}")
    say(f"root filesystem: {','.join(o for o in options if o in ('ro', 'rw'))}; /tmp: tmpfs")


def end_to_end(ports: dict[str, int], redis_url: str) -> None:
    """One onboarding in through the ingress, applied by the worker at the sandbox."""
    from handlers import examples

    event = examples.onboarded("ImageCheck1")
    answer = httpx.post(
        f"http://127.0.0.1:{ports['ingress']}/events",
        content=json.dumps(event),
        headers={
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/cloudevents+json",
        },
        timeout=10,
    )
    if answer.status_code != 202:
        raise SystemExit(f"ingress answered {answer.status_code}: {answer.text}")
    client = redis.Redis.from_url(redis_url)
    from worker.ops.outcomes import read_outcomes

    def applied() -> bool:
        return any(
            o.get("event_id") == event["id"] and o.get("outcome") == "applied"
            for o in read_outcomes(client, PREFIX)
        )

    wait_for("the event applied (outcome stream)", applied, timeout_s=60)
    state = httpx.get(f"http://127.0.0.1:{ports['sandbox']}/_sandbox/state", timeout=5).json()
    if not state.get("subaccounts"):
        raise SystemExit(f"the sandbox has no subaccount after the event: {state}")
    metrics = httpx.get(f"http://127.0.0.1:{ports['ingress-metrics']}/metrics", timeout=5).text
    if 'route="/events",status="202"' not in metrics:
        raise SystemExit("the ingress's metrics port did not count the 202")
    say(
        f"end to end: {event['type']} {event['id']} -> 202 -> applied; sandbox subaccounts: "
        f"{sorted(state['subaccounts'])}"
    )


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="saw-image-redis-")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for("redis-server", lambda: bool(redis.Redis.from_url(url).ping()), timeout_s=10)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    if os.geteuid() != 0:
        print("make image-check runs as root (buildah, debootstrap, chroot)", file=sys.stderr)
        return 2
    for tool in ("buildah", "debootstrap", "redis-server"):
        if shutil.which(tool) is None:
            print(
                f"{tool} is missing: apt-get install buildah debootstrap redis-server",
                file=sys.stderr,
            )
            return 2
    WORK.mkdir(parents=True, exist_ok=True)
    total = time.monotonic()
    standin_base()
    seconds, tail = build()
    buildah("rmi", "--prune")  # earlier builds' images, now untagged (vfs copies are large)
    say(f"build: {seconds:.0f} s; image {IMAGE}: {image_size()}\n{tail}")
    logs = WORK / "logs"
    logs.mkdir(exist_ok=True)
    with private_redis() as redis_url, readonly_root() as root:
        run_roles(root, image_config(), redis_url, logs)
    say(f"image-check passed in {time.monotonic() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
