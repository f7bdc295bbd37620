"""The GPU executor's SHA-256 source, compiled for the host with g++, against hashlib and the tree."""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.sha256_kernels import SHA256_SOURCE

HARNESS = """
extern "C" void host_sha256(
    unsigned char prefix, const unsigned char* data, unsigned len, unsigned char* out) {
  sha256_prefixed(prefix, data, len, out);
}
"""


@pytest.fixture(scope="module")
def host_sha(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++ to build the kernel source for the host")
    folder: Path = tmp_path_factory.mktemp("sha")
    source = folder / "sha.cpp"
    source.write_text(SHA256_SOURCE + HARNESS)
    lib = folder / "libsha.so"
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", str(source), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def _digest(lib: ctypes.CDLL, prefix: int, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(32)
    lib.host_sha256(ctypes.c_ubyte(prefix), data, ctypes.c_uint(len(data)), out)
    return out.raw


@pytest.mark.parametrize("length", [0, 1, 54, 55, 56, 63, 64, 119, 120, 2048, 4097])
def test_kernel_sha256_matches_hashlib(host_sha: ctypes.CDLL, length: int) -> None:
    data = bytes((7 * k + 3) % 256 for k in range(length))
    assert _digest(host_sha, 0, data) == hashlib.sha256(b"\x00" + data).digest() == merkle.leaf_hash(data)


def test_kernel_node_hash_matches_tree(host_sha: ctypes.CDLL) -> None:
    left, right = hashlib.sha256(b"l").digest(), hashlib.sha256(b"r").digest()
    assert _digest(host_sha, 1, left + right) == merkle.node_hash(left, right)
