"""The shared vector store: Chroma's server, used by several replicas at once.

Configured with ``storage.vector_store_url: chroma://HOST:PORT`` (or
``http://HOST:PORT``). pgvector would be the first choice, but the extension is
not available on this PostgreSQL (see the RAG notes in the report), so the
scale-out store is Chroma's HTTP server (``chroma run``). Steward always sends
its own embeddings: Chroma's built-in embedding function (which downloads a
model) is never used.

Each collection is a Chroma collection ``<project>_rag_<name>`` with cosine
space, plus a one-row ``..._meta`` collection whose token changes on every
write, so each replica knows when to rebuild its keyword index.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from steward._extras import optional_import
from steward.backends.base import VectorHit, VectorRecord
from steward.errors import BackendUnavailable, ValidationFailed

__all__ = ["ChromaVectorStore", "is_chroma_url"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_META_FIELDS = ("doc_id", "section", "title", "doc_hash", "position")


def is_chroma_url(url: str) -> bool:
    """True for ``chroma://``, ``chroma+http://`` and plain ``http(s)://`` URLs."""
    return urlparse(url).scheme in ("chroma", "chroma+http", "http", "https")


class ChromaVectorStore:
    """A Chroma server over HTTP; every replica sees the same collections."""

    def __init__(self, url: str, prefix: str = "steward") -> None:
        chromadb = optional_import("chromadb", extra="chroma", needed_for="storage.vector_store_url (a Chroma server)")
        from chromadb.config import Settings

        parsed = urlparse(url)
        if not parsed.hostname:
            raise ValidationFailed(f"vector_store_url {url!r} has no host", hint="use chroma://HOST:PORT")
        self.url = url
        self.prefix = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)[:20] or "steward"
        try:
            self._client: Any = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or 8000,
                ssl=parsed.scheme == "https",
                settings=Settings(anonymized_telemetry=False),
            )
            self._batch = int(self._client.get_max_batch_size())
        except Exception as exc:  # chromadb raises ValueError / httpx errors when down
            raise BackendUnavailable(
                f"cannot reach the Chroma server at {url}: {exc}",
                hint="start it with 'chroma run --host 127.0.0.1 --port PORT --path DIR' or remove storage.vector_store_url",
            ) from exc
        self._lock = threading.Lock()
        self._cols: dict[str, Any] = {}

    def _name(self, collection: str) -> str:
        if not _NAME.match(collection):
            raise ValidationFailed(
                f"invalid collection name {collection!r}", code="rag.collection_name", hint="use 1-40 letters, digits, '-' or '_'"
            )
        return f"{self.prefix}_rag_{collection}"

    def _col(self, name: str, create: bool) -> Any | None:
        with self._lock:
            col = self._cols.get(name)
            if col is not None:
                return col
            if create:
                col = self._client.get_or_create_collection(name, metadata={"hnsw:space": "cosine"}, embedding_function=None)
            else:
                try:
                    col = self._client.get_collection(name, embedding_function=None)
                except Exception:  # chromadb raises NotFoundError (a ValueError subclass in some versions)
                    return None
            self._cols[name] = col
            return col

    def _touch(self, collection: str) -> None:
        meta = self._col(self._name(collection) + "_meta", create=True)
        assert meta is not None
        meta.upsert(ids=["version"], embeddings=[[1.0]], metadatas=[{"token": uuid.uuid4().hex}], documents=["version"])

    def add(self, collection: str, records: Sequence[VectorRecord], vectors: Any) -> None:
        """Upsert records with their vectors, in the server's maximum batch size."""
        import numpy as np

        if not records:
            return
        vecs = np.asarray(vectors, dtype=np.float32)
        col = self._col(self._name(collection), create=True)
        assert col is not None
        for i in range(0, len(records), self._batch):
            part = records[i : i + self._batch]
            col.upsert(
                ids=[r.chunk_id for r in part],
                embeddings=vecs[i : i + len(part)],
                documents=[r.text for r in part],
                metadatas=[{f: getattr(r, f) for f in _META_FIELDS} for r in part],
            )
        self._touch(collection)

    def delete_docs(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of the given documents."""
        col = self._col(self._name(collection), create=False)
        if col is None or not doc_ids:
            return
        ids = list(doc_ids)
        for i in range(0, len(ids), 500):
            col.delete(where={"doc_id": {"$in": ids[i : i + 500]}})
        self._touch(collection)

    def _pages(self, collection: str, include: list[str]) -> list[dict[str, Any]]:
        col = self._col(self._name(collection), create=False)
        if col is None:
            return []
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = col.get(include=include, limit=self._batch, offset=offset)
            out.append(page)
            n = len(page["ids"])
            if n < self._batch:
                return out
            offset += n

    def doc_hashes(self, collection: str) -> dict[str, str]:
        """``doc_id -> doc_hash`` of every stored document."""
        hashes: dict[str, str] = {}
        for page in self._pages(collection, ["metadatas"]):
            for meta in page["metadatas"]:
                hashes[str(meta["doc_id"])] = str(meta["doc_hash"])
        return hashes

    @staticmethod
    def _record(chunk_id: str, doc: str, meta: dict[str, Any]) -> VectorRecord:
        return VectorRecord(
            chunk_id=chunk_id,
            doc_id=str(meta["doc_id"]),
            section=str(meta["section"]),
            title=str(meta["title"]),
            text=doc,
            doc_hash=str(meta["doc_hash"]),
            position=int(meta["position"]),
        )

    def search(self, collection: str, vector: Any, k: int) -> list[VectorHit]:
        """The ``k`` nearest chunks by cosine similarity (HNSW on the server), best first."""
        import numpy as np

        col = self._col(self._name(collection), create=False)
        if col is None or k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        res = col.query(query_embeddings=[q], n_results=k, include=["documents", "metadatas", "distances"])
        hits = []
        for cid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True):
            hits.append(VectorHit(self._record(cid, doc, meta), 1.0 - float(dist)))
        return hits

    def records(self, collection: str) -> list[VectorRecord]:
        """Every stored record, ordered by chunk id."""
        out = []
        for page in self._pages(collection, ["documents", "metadatas"]):
            for cid, doc, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                out.append(self._record(cid, doc, meta))
        out.sort(key=lambda r: r.chunk_id)
        return out

    def count(self, collection: str) -> int:
        """Number of stored chunks."""
        col = self._col(self._name(collection), create=False)
        return 0 if col is None else int(col.count())

    def version(self, collection: str) -> str:
        """The write token of the collection (changes on every add/delete, by any replica)."""
        meta = self._col(self._name(collection) + "_meta", create=False)
        if meta is None:
            return "0"
        got = meta.get(ids=["version"], include=["metadatas"])
        return str(got["metadatas"][0]["token"]) if got["ids"] else "0"

    def drop(self, collection: str) -> None:
        """Delete a collection and its meta row."""
        for name in (self._name(collection), self._name(collection) + "_meta"):
            with self._lock:
                self._cols.pop(name, None)
            try:
                self._client.delete_collection(name)
            except Exception:  # absent: nothing to drop
                logger.debug("chroma collection %s absent", name)

    def close(self) -> None:
        """Forget cached collection handles."""
        with self._lock:
            self._cols.clear()
