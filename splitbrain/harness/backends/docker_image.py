"""Node images without a registry: build `splitbrain-node` from a rootfs made on this machine.

No image can be pulled here, so the base image is made from Debian's packages: debootstrap a
minimal Debian with python3, iptables, iproute2 and procps into a temporary folder, tar it and
`docker import` it as `splitbrain-base:<hash>`; then docker/Dockerfile is built on top of it
(BASE build-arg) with the splitbrain package copied in, as `splitbrain-node:<hash>`.

Caching: the base tag hashes the suite, the package list and BUILDER_VERSION; the node tag hashes
that plus every file of the splitbrain package. An image whose tag exists is reused, so a second
run costs one `docker image inspect`. Older `splitbrain-node` tags are removed when a new one is
built so they do not pile up.

The Debian mirror is the one apt on this machine is configured with (or $SPLITBRAIN_DEBIAN_MIRROR).
Building the base needs root and debootstrap (`apt-get install debootstrap`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BUILDER_VERSION = "1"
SUITE = "bookworm"
PACKAGES = ("python3", "iptables", "iproute2", "procps")
BASE_REPO = "splitbrain-base"
NODE_REPO = "splitbrain-node"
LABEL = "io.splitbrain.image"
DEBOOTSTRAP_TIMEOUT_S = 900

PACKAGE_DIR = Path(__file__).resolve().parents[2]          # .../splitbrain
DOCKERFILE = PACKAGE_DIR.parent / "docker" / "Dockerfile"


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says which step and why (one line)."""


def _client():
    import docker
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure to reach the engine is the same to users
        raise ImageBuildError(f"cannot reach the Docker engine: {e}") from None
    return client


def base_tag() -> str:
    h = hashlib.sha256(f"{BUILDER_VERSION}|{SUITE}|{','.join(PACKAGES)}".encode()).hexdigest()
    return f"{BASE_REPO}:{h[:12]}"


def _dockerfile_text() -> str:
    if DOCKERFILE.is_file():
        return DOCKERFILE.read_text()
    raise ImageBuildError(f"missing {DOCKERFILE} (the node image's Dockerfile)")


def code_hash() -> str:
    """A hash of every source file of the splitbrain package and of the Dockerfile."""
    h = hashlib.sha256(base_tag().encode())
    h.update(_dockerfile_text().encode())
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(PACKAGE_DIR)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def node_tag() -> str:
    return f"{NODE_REPO}:{code_hash()}"


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources)."""
    env = os.environ.get("SPLITBRAIN_DEBIAN_MIRROR")
    if env:
        return env
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(path).read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M) and "security" not in stanza:
                m = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if os.path.isfile(path):
            for line in Path(path).read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and SUITE in parts[2:3] \
                        and "security" not in line:
                    return parts[1]
    raise ImageBuildError("no Debian mirror found in apt's sources; set SPLITBRAIN_DEBIAN_MIRROR")


def _exists(client, tag: str) -> bool:
    import docker
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_base(client, log=print) -> str:
    """Make the base image from a debootstrap rootfs unless it exists; returns its tag."""
    tag = base_tag()
    if _exists(client, tag):
        return tag
    if os.geteuid() != 0:
        raise ImageBuildError("building the base image runs debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="splitbrain-rootfs-") as tmp:
        root = os.path.join(tmp, "root")
        log(f"debootstrap {SUITE} ({', '.join(PACKAGES)}) into {root} ...")
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, root,
             mirror], capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ImageBuildError(f"debootstrap failed (exit {proc.returncode}): {last[0]}")
        # Keep the image small: apt lists and caches are not needed at run time.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
        tar_path = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", root, "-cf", tar_path, "."], check=True,
                       capture_output=True)
        log(f"docker import -> {tag}")
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(
            tar_path, repository=repo, tag=version,
            changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     f"LABEL {LABEL}=base"])
    if not _exists(client, tag):
        raise ImageBuildError(f"docker import did not produce {tag}")
    return tag


def ensure_image(log=print, rebuild: bool = False) -> str:
    """The tag of an up-to-date node image, building what is missing. Raises ImageBuildError."""
    import docker
    client = _client()
    tag = node_tag()
    if not rebuild and _exists(client, tag):
        return tag
    base = build_base(client, log)
    with tempfile.TemporaryDirectory(prefix="splitbrain-image-") as ctx:
        shutil.copytree(PACKAGE_DIR, os.path.join(ctx, "splitbrain"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        Path(ctx, "Dockerfile").write_text(_dockerfile_text())
        log(f"docker build (BASE={base}) -> {tag}")
        repo, _, version = tag.partition(":")
        try:
            client.images.build(path=ctx, tag=tag, buildargs={"BASE": base}, rm=True,
                                pull=False, labels={LABEL: "node"})
        except docker.errors.BuildError as e:
            raise ImageBuildError(f"docker build failed: {e}") from None
    client.images.get(tag).tag(NODE_REPO, "latest")
    for image in client.images.list(name=NODE_REPO):
        for t in image.tags:
            if t not in (tag, f"{NODE_REPO}:latest"):
                try:
                    client.images.remove(t)
                except docker.errors.APIError:
                    pass
    return tag
