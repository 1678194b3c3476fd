"""The embedded vector store: LanceDB tables on local disk (``ROOT/vectors``).

One LanceDB table per collection (``rag_<collection>``). Search is an exact
(flat) cosine scan, which stays in milliseconds up to a few hundred thousand
384-dimensional rows; larger collections get an IVF index on demand.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steward._extras import optional_import
from steward.backends.base import VectorHit, VectorRecord
from steward.errors import ValidationFailed

__all__ = ["LanceDBVectorStore"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FIELDS = ("chunk_id", "doc_id", "section", "title", "text", "doc_hash", "position")


def _table_name(collection: str) -> str:
    if not _NAME.match(collection):
        raise ValidationFailed(
            f"invalid collection name {collection!r}",
            code="rag.collection_name",
            hint="use 1-64 letters, digits, '-' or '_'",
        )
    return f"rag_{collection}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceDBVectorStore:
    """LanceDB on a local directory; safe for one writer process and many readers."""

    #: Below this many rows a flat scan is fast enough (and exact).
    index_min_rows = 20000
    #: IVF partitions probed per query (of ~rows/1500).
    nprobes = 16

    def __init__(self, path: str | Path, dim: int = 384) -> None:
        lancedb = optional_import("lancedb", extra="llm", needed_for="the RAG vector store (LanceDB under ROOT/vectors)")

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.url = str(self.path)
        self.dim = dim
        self._db: Any = lancedb.connect(str(self.path))
        self._lock = threading.Lock()
        self._tables: dict[str, Any] = {}

    def _schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("chunk_id", pa.string()),
                pa.field("doc_id", pa.string()),
                pa.field("section", pa.string()),
                pa.field("title", pa.string()),
                pa.field("text", pa.string()),
                pa.field("doc_hash", pa.string()),
                pa.field("position", pa.int64()),
                pa.field("vector", pa.list_(pa.float32(), self.dim)),
            ]
        )

    def _table(self, collection: str, create: bool = False) -> Any | None:
        name = _table_name(collection)
        with self._lock:
            tbl = self._tables.get(name)
            if tbl is not None:
                return tbl
            if name in self._names():
                tbl = self._db.open_table(name)
            elif create:
                tbl = self._db.create_table(name, schema=self._schema())
            else:
                return None
            self._tables[name] = tbl
            return tbl

    def _names(self) -> set[str]:
        names: set[str] = set()
        token: str | None = None
        while True:
            resp = self._db.list_tables(page_token=token, limit=1000)
            names.update(resp.tables)
            token = resp.page_token
            if not token:
                return names

    def _scan(self, tbl: Any, columns: list[str]) -> Any:
        return tbl.search().select(columns).limit(None).to_arrow()

    def add(self, collection: str, records: Sequence[VectorRecord], vectors: Any) -> None:
        """Append records with their vectors (an ``(n, dim)`` float32 array)."""
        import numpy as np
        import pyarrow as pa

        if not records:
            return
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.shape != (len(records), self.dim):
            raise ValidationFailed(f"expected vectors of shape ({len(records)}, {self.dim}), got {vecs.shape}")
        cols: dict[str, Any] = {f: [getattr(r, f) for r in records] for f in _FIELDS}
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), self.dim)
        table = pa.Table.from_pydict(cols, schema=self._schema())
        tbl = self._table(collection, create=True)
        assert tbl is not None
        tbl.add(table)
        self._maintain_index(tbl)

    def _maintain_index(self, tbl: Any) -> None:
        """Past :attr:`index_min_rows`, search through an IVF index instead of a flat scan.

        A flat cosine scan of 100k x 384 floats costs LanceDB 0.2-0.4 s on 2 busy cores. An
        IVF-FLAT index (~1,500 rows per partition, :attr:`nprobes` probed) answers in a few ms,
        builds in seconds, and keeps exact distances inside the probed partitions; on the
        100k-chunk benchmark its top-1 agreed with exact search on every eval question, where
        IVF-HNSW-SQ agreed on 76%. Rows added later are searched flat until ``optimize``
        folds them into the index.
        """
        rows = tbl.count_rows()
        if rows < self.index_min_rows:
            return
        if any("ivf" in str(ix.index_type).lower() for ix in tbl.list_indices()):
            tbl.optimize()
            return
        from lancedb.index import IvfFlat

        parts = max(2, rows // 1500)
        tbl.create_index("vector", config=IvfFlat(distance_type="cosine", num_partitions=parts), replace=True)
        logger.info("built IVF_FLAT index on %s (%d partitions)", tbl.name, parts)

    def delete_docs(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of the given documents."""
        tbl = self._table(collection)
        if tbl is None or not doc_ids:
            return
        ids = list(doc_ids)
        for i in range(0, len(ids), 500):  # keep the predicate small
            tbl.delete(f"doc_id IN ({', '.join(_quote(d) for d in ids[i : i + 500])})")

    def doc_hashes(self, collection: str) -> dict[str, str]:
        """``doc_id -> doc_hash`` of every stored document."""
        tbl = self._table(collection)
        if tbl is None:
            return {}
        arrow = self._scan(tbl, ["doc_id", "doc_hash"])
        return dict(zip(arrow.column("doc_id").to_pylist(), arrow.column("doc_hash").to_pylist(), strict=True))

    def search(self, collection: str, vector: Any, k: int) -> list[VectorHit]:
        """The ``k`` nearest chunks by cosine similarity, best first."""
        import numpy as np

        tbl = self._table(collection)
        if tbl is None or k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        rows = tbl.search(q).distance_type("cosine").nprobes(self.nprobes).select([*_FIELDS, "_distance"]).limit(k).to_list()
        hits = []
        for row in rows:
            rec = VectorRecord(**{f: row[f] for f in _FIELDS})
            hits.append(VectorHit(rec, 1.0 - float(row["_distance"])))
        return hits

    def records(self, collection: str) -> list[VectorRecord]:
        """Every stored record, ordered by chunk id."""
        tbl = self._table(collection)
        if tbl is None:
            return []
        arrow = self._scan(tbl, list(_FIELDS))
        cols = {f: arrow.column(f).to_pylist() for f in _FIELDS}
        out = [VectorRecord(*(cols[f][i] for f in _FIELDS)) for i in range(arrow.num_rows)]
        out.sort(key=lambda r: r.chunk_id)
        return out

    def count(self, collection: str) -> int:
        """Number of stored chunks."""
        tbl = self._table(collection)
        return 0 if tbl is None else int(tbl.count_rows())

    def version(self, collection: str) -> str:
        """The LanceDB table version (changes on every write)."""
        tbl = self._table(collection)
        if tbl is None:
            return "0"
        tbl.checkout_latest()
        return str(tbl.version)

    def drop(self, collection: str) -> None:
        """Delete a collection's table."""
        name = _table_name(collection)
        with self._lock:
            self._tables.pop(name, None)
            if name in self._names():
                self._db.drop_table(name)

    def close(self) -> None:
        """Forget open tables (LanceDB holds no server connection)."""
        with self._lock:
            self._tables.clear()
