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
extern "C" void host_sha256_join(
    const unsigned char* head, unsigned hlen, const unsigned char* data, unsigned long long dlen,
    unsigned char* out) {
  sha256_join(head, hlen, data, dlen, out);
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


@pytest.mark.parametrize("hlen", [0, 1, 2, 3, 4, 5, 63, 64, 67])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_kernel_join_matches_hashlib_on_every_path(host_sha: ctypes.CDLL, hlen: int, offset: int) -> None:
    """Aligned data (offset 0) takes the whole-block and the word fast paths with every shift the
    head's length gives; misaligned data, or a length not a multiple of 4, the byte path."""
    head = bytes((5 * k + 1) % 256 for k in range(hlen))
    backing = ctypes.create_string_buffer(4096 + 16)  # ctypes buffers are at least 8-byte aligned
    base = ctypes.addressof(backing)
    assert base % 8 == 0
    for dlen in (0, 3, 4, 56, 60, 64, 124, 128, 1023, 1024, 1028, 4096):
        data = bytes((7 * k + 3) % 256 for k in range(dlen))
        ctypes.memmove(base + offset, data, dlen)
        out = ctypes.create_string_buffer(32)
        host_sha.host_sha256_join(
            head, ctypes.c_uint(hlen), ctypes.c_void_p(base + offset), ctypes.c_ulonglong(dlen), out
        )
        assert out.raw == hashlib.sha256(head + data).digest(), (hlen, offset, dlen)
