"""The offline character corpus and its fixed vocabulary.

Corpus ``"python_docs"``: the standard library's ``pydoc_data.topics`` (the Python reference
documentation used by ``help()``; about 465,000 characters of English prose and code, PSF
license), present on every CPython install. Topics are joined in sorted key order, so the text
is a deterministic function of the Python release; the builder stores it per content hash.

Vocabulary (fixed, 98 ids): ``0`` = UNK (any other character), ``1`` = ``"\\n"``, ``2`` =
``"\\t"``, ``3..97`` = printable ASCII ``" "..."~"``. ``decode(encode(s)) == s`` for text made
of those characters; other characters decode as ``UNK_CHAR``.
"""
from __future__ import annotations

import hashlib

import numpy as np

UNK_ID = 0
UNK_CHAR = "\ufffd"
VOCAB: tuple = (UNK_CHAR, "\n", "\t") + tuple(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(VOCAB)

_ENCODE_TABLE = np.full(128, UNK_ID, dtype=np.int32)
for _i, _ch in enumerate(VOCAB[1:], start=1):
    _ENCODE_TABLE[ord(_ch)] = _i
_ENCODE_TABLE.setflags(write=False)
_DECODE_TABLE = np.array(VOCAB)
del _i, _ch


def encode(text: str) -> np.ndarray:
    """Characters -> int32 token ids (``UNK_ID`` for characters outside the vocabulary)."""
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    out = np.full(codes.shape, UNK_ID, dtype=np.int32)
    ascii_mask = codes < 128
    out[ascii_mask] = _ENCODE_TABLE[codes[ascii_mask]]
    return out


def decode(tokens) -> str:
    """Token ids -> string; raises ``ValueError`` for ids outside ``[0, VOCAB_SIZE)``."""
    ids = np.asarray(tokens)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer)):
        raise TypeError(f"decode expects integer token ids, got dtype {ids.dtype}")
    ids = ids.reshape(-1).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
        raise ValueError(f"token ids must lie in [0, {VOCAB_SIZE}), got range "
                         f"[{ids.min()}, {ids.max()}]")
    return "".join(_DECODE_TABLE[ids].tolist())


def python_docs_text() -> str:
    """The ``pydoc_data.topics`` corpus: all topics in sorted key order, blank-line separated."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def corpus_fingerprint(text: str) -> str:
    """Short content hash naming a corpus version (so caches never mix Python releases)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


TEXT_CORPORA = {"python_docs": python_docs_text}
