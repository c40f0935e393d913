"""A real S3-compatible server for tests: moto's standalone server (`moto[server]`), run in this
process on 127.0.0.1 (its buckets live in this process, so a stopped server restarted on the same
port serves them again, as a restarted MinIO serves its disk)."""

import os
from contextlib import contextmanager

from conftest import free_port

BUCKET = "layoutray-test"


class S3Server:
    """moto's server on a fixed free port; `stop()` and `start()` it to simulate an outage."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        self._server.stop()  # werkzeug closes the socket: clients get "connection refused"

    def env(self, cache_dir) -> dict:
        """What a shell on the cluster would export (the standard AWS variables pyarrow reads)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "LAYOUTRAY_CACHE_DIR": str(cache_dir)}


@contextmanager
def s3_environment(tmp_path):
    """A running server with BUCKET created, its variables in os.environ (inherited by a Ray
    instance started afterwards and by subprocesses) until the block ends."""
    import boto3

    server = S3Server()
    server.start()
    saved = {k: os.environ.get(k) for k in server.env(tmp_path)}
    os.environ.update(server.env(tmp_path / "cache"))
    try:
        boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
