"""A certificate authority of its own for tests, made with the ``openssl`` CLI (as a user
makes one), and the certificates it issues: valid, expired, for other hosts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# `openssl ca` keeps an index of what it issued; copy_extensions keeps the requests' SANs.
CA_CONFIG = """\
[ca]
default_ca = test
[test]
database = {folder}/index.txt
new_certs_dir = {folder}
serial = {folder}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
"""
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: object) -> None:
    if shutil.which("openssl") is None:
        msg = "openssl is not installed: run `make test`, which installs it"
        raise RuntimeError(msg)
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, PEM files."""

    cert: Path
    key: Path


class Pki:
    """A certificate authority of its own in ``folder``, and the certificates it issues."""

    def __init__(self, folder: Path, name: str = "bridge-test-ca") -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.ca = Pair(folder / "ca.crt", folder / "ca.key")
        subject = ["-subj", f"/CN={name}"]
        openssl(
            "req",
            "-x509",
            *EC_KEY,
            "-days",
            "2",
            *subject,
            "-keyout",
            self.ca.key,
            "-out",
            self.ca.cert,
        )
        (folder / "index.txt").write_text("")
        (folder / "serial").write_text("1000\n")
        self.config = folder / "ca.cnf"
        self.config.write_text(CA_CONFIG.format(folder=folder))

    def issue(
        self,
        name: str,
        *,
        hosts: tuple[str, ...] = (),
        valid: tuple[str, str] | None = None,
    ) -> Pair:
        """A certificate for ``name`` (its CN) naming ``hosts`` (IP addresses or DNS names) in
        its subjectAltName; valid for two days from now, or ``valid`` = (start, end) as
        ``YYYYMMDDHHMMSSZ``."""
        pair = Pair(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        request = self.folder / f"{name}.csr"
        san = ",".join(f"IP:{h}" if h[0].isdigit() else f"DNS:{h}" for h in hosts)
        extension = ["-addext", f"subjectAltName={san}"] if san else []
        openssl(
            "req", *EC_KEY, "-subj", f"/CN={name}", *extension, "-keyout", pair.key, "-out", request
        )
        dates = ["-startdate", valid[0], "-enddate", valid[1]] if valid else ["-days", "2"]
        ca = ["-config", self.config, "-cert", self.ca.cert, "-keyfile", self.ca.key]
        openssl("ca", "-batch", "-notext", *ca, "-in", request, "-out", pair.cert, *dates)
        return pair
