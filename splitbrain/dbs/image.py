"""Database images without a registry: the offline base image plus the database's Debian packages.

    tag = ensure_db_image(Etcd)        # "splitbrain-db-etcd:<hash>"

The base is splitbrain-base (harness/backends/docker_image.py: a debootstrap of Debian with
python3, iptables, iproute2, procps, imported with `docker import`); on top of it a Dockerfile
installs the database's PACKAGES with apt-get from the same Debian mirror. The tag hashes the base
tag, the package list and DB_IMAGE_VERSION, so the image is built once per database and reused
(a later run costs one `docker image inspect`).
"""

from __future__ import annotations

import hashlib
import io
from typing import Callable

from ..harness.backends.docker_image import (ImageBuildError, _client, _exists, base_tag,
                                             build_base)

DB_IMAGE_VERSION = "1"
DB_REPO_PREFIX = "splitbrain-db-"
LABEL = "io.splitbrain.image"

DOCKERFILE = """ARG BASE
FROM ${{BASE}}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
      --no-install-recommends {packages} >/dev/null && rm -rf /var/lib/apt/lists/*
LABEL {label}="db"
"""


def db_image_tag(db_cls) -> str:
    h = hashlib.sha256(f"{DB_IMAGE_VERSION}|{base_tag()}|{' '.join(db_cls.PACKAGES)}".encode())
    return f"{DB_REPO_PREFIX}{db_cls.name}:{h.hexdigest()[:12]}"


def ensure_db_image(db_cls, log: Callable[[str], None] = print) -> str:
    """The tag of the database's image, building the base and the image when missing.
    Raises ImageBuildError (one line) when a step fails."""
    import docker
    client = _client()
    tag = db_image_tag(db_cls)
    if _exists(client, tag):
        return tag
    base = build_base(client, log)
    text = DOCKERFILE.format(packages=" ".join(db_cls.PACKAGES), label=LABEL)
    log(f"docker build (BASE={base}, apt-get install {' '.join(db_cls.PACKAGES)}) -> {tag}")
    try:
        client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag,
                            buildargs={"BASE": base}, rm=True, pull=False,
                            labels={LABEL: "db"})
    except docker.errors.BuildError as e:
        last = [str(x.get("stream", "")).strip() for x in e.build_log if x.get("stream")][-1:]
        raise ImageBuildError(f"docker build of {tag} failed: {e} {' '.join(last)}") from None
    except docker.errors.APIError as e:
        raise ImageBuildError(f"docker build of {tag} failed: {e}") from None
    return tag
