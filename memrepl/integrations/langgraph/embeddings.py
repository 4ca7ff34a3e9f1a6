"""LangGraph's ``IndexConfig["embed"]`` as a memrepl embedder.

LangGraph accepts, as ``embed``, a LangChain ``Embeddings`` object, a sync function of a list of
texts, an async one, or a provider string (``"openai:text-embedding-3-small"``, with LangChain
installed); :func:`langgraph.store.base.ensure_embeddings` makes each of them an ``Embeddings``
object. :class:`LangChainEmbedder` gives that object the shape memrepl's vector index calls
(:mod:`memrepl.storage.embedders`): ``dims``, ``embed(texts)`` (``embed_documents``),
``embed_query(text)`` (``embed_query``: queries embedded as LangGraph's stores embed them) and a
``name`` recorded with the vectors.

The rule that keeps it right: **the model never runs on the event loop, and an async-only model
runs on one.** memrepl embeds in its indexer thread and in the thread that searches (a worker
thread for ``abatch``). A model with only an async form (an async function) is run from there on
the event loop the store was last used from with ``abatch`` (:meth:`LangChainEmbedder.use_loop`),
which is free meanwhile; with no such loop, on a private one in that thread. A sync call made on
the event loop's own thread cannot wait for it, and says so.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from langchain_core.embeddings import Embeddings
from langgraph.store.base.embed import EmbeddingsLambda

from memrepl.errors import EmbedderError

T = TypeVar("T")

#: How long a worker waits for an async model on the application's loop.
ASYNC_MODEL_TIMEOUT_S = 600.0


def model_name(embeddings: Embeddings) -> str:
    """The name the vector index records for ``embeddings``: its class (or wrapped function) and
    its ``model``/``model_name`` attribute when it has one. Vectors of another name are embedded
    again; give ``MemreplStore(embedder_name=...)`` when two models would share a name."""
    target: Any = embeddings
    if isinstance(embeddings, EmbeddingsLambda):
        target = getattr(embeddings, "func", None) or getattr(embeddings, "afunc", None)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    model = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
    return f"langgraph:{name}" + (f":{model}" if isinstance(model, str) else "")


def is_async_only(embeddings: Embeddings) -> bool:
    """Whether ``embeddings`` wraps an async function and has no sync form."""
    return isinstance(embeddings, EmbeddingsLambda) and getattr(embeddings, "func", None) is None


class LangChainEmbedder:
    """A LangChain ``Embeddings`` object as a memrepl embedder (see the module docstring)."""

    def __init__(self, embeddings: Embeddings, dims: int, name: str | None = None) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise EmbedderError(
                f"IndexConfig dims must be a positive int, not {dims!r}", reason="dims"
            )
        self.embeddings = embeddings
        self.dims = dims
        self.name = name or model_name(embeddings)
        self._async_only = is_async_only(embeddings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run an async-only model on ``loop`` from now on (the loop ``abatch`` runs on)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (``embed_documents``)."""
        if self._async_only:
            return self._run(lambda: self.embeddings.aembed_documents(list(texts)))
        return self.embeddings.embed_documents(list(texts))

    def embed_query(self, text: str) -> list[float]:
        """The vector of a search query (``embed_query``)."""
        if self._async_only:
            return self._run(lambda: self.embeddings.aembed_query(text))
        return self.embeddings.embed_query(text)

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is not None and loop.is_running():
            if threading.get_ident() == self._loop_thread:
                raise EmbedderError(
                    "this IndexConfig embeds with an async function: call the store's async "
                    "methods (aput, asearch...) from the event loop, not the sync ones",
                    reason="async-only",
                )

            async def call() -> T:
                return await make()

            future = asyncio.run_coroutine_threadsafe(call(), loop)
            return future.result(timeout=ASYNC_MODEL_TIMEOUT_S)

        async def private() -> T:
            return await make()

        return asyncio.run(private())
