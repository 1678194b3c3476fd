"""The shared vector store: a real Chroma server on 127.0.0.1 used by two replicas at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from steward.backends.base import VectorRecord, VectorStore
from steward.errors import SpecError
from steward.llm.rag import ask, ingest, retrieve, vector_store
from steward.spec import load_spec
from steward.workspace import Workspace

DOCS = {
    "alerts/drift.md": "# Drift alert\n## Meaning\nThe population stability index of a feature exceeded 0.2 against the reference profile.\n"
    "## Action\nRetrain on the latest window and gate the challenger against the champion.\n",
    "alerts/budget.md": "# Budget alert\n## Meaning\nA gateway key spent more than 80 percent of its monthly budget.\n",
}


def test_chroma_store_protocol_roundtrip(chroma_url: str, embedder: Any, unique: str) -> None:
    from steward.backends.vector_chroma import ChromaVectorStore

    store = ChromaVectorStore(chroma_url, prefix=f"t{unique}")
    assert isinstance(store, VectorStore)
    recs = [
        VectorRecord(f"d{i}#s#0", f"d{i}", "s", "T", text, f"h{i}", 0)
        for i, text in enumerate(["alpha beta", "gamma delta", "heapq merge"])
    ]
    vecs = embedder.embed([r.text for r in recs])
    assert store.count("c1") == 0 and store.version("c1") == "0"
    store.add("c1", recs, vecs)
    v1 = store.version("c1")
    assert store.count("c1") == 3 and v1 != "0"
    assert store.doc_hashes("c1") == {"d0": "h0", "d1": "h1", "d2": "h2"}
    hits = store.search("c1", vecs[2], 2)
    assert hits[0].record == recs[2] and hits[0].score == pytest.approx(1.0, abs=1e-3)
    store.delete_docs("c1", ["d2"])
    assert store.count("c1") == 2 and store.version("c1") != v1
    assert [r.chunk_id for r in store.records("c1")] == ["d0#s#0", "d1#s#0"]
    store.drop("c1")
    assert store.count("c1") == 0


def test_two_replicas_share_one_chroma_collection(rag_project: Callable[..., Any], chroma_url: str, embedder: Any) -> None:
    ws1 = rag_project(storage={"vector_store_url": chroma_url}, docs=DOCS)
    ws2 = Workspace(load_spec(ws1.spec.spec_path))  # a second replica of the same project
    assert type(vector_store(ws1)).__name__ == "ChromaVectorStore"

    rep = ingest(ws1, "docs")
    assert rep.added == 2 and rep.chunks_total == rep.chunks_added
    # the other replica sees the same collection: re-ingesting there is a no-op
    again = ingest(ws2, "docs")
    assert again.unchanged == 2 and again.chunks_added == 0

    ans = ask(ws2, "What does it mean when the population stability index is above 0.2?")
    assert not ans.abstained and ans.citations[0].doc_id == "docs:alerts/drift.md"

    # replica 2 has built its keyword index; replica 1 changes a document ...
    assert retrieve(ws2, "quarterly", k=3).hits[0].keyword_score is None
    ws1.spec.resolve("docs/alerts/budget.md").write_text("# Budget alert\n## Meaning\nA key exceeded its quarterly budget ceiling.\n")
    assert ingest(ws1, "docs").updated == 1
    # ... and replica 2 sees the new text, in the vector and the keyword retriever alike
    top = retrieve(ws2, "quarterly", k=3).hits[0]
    assert top.doc_id == "docs:alerts/budget.md" and top.keyword_score is not None and "quarterly" in top.text


def test_unknown_vector_server_is_a_spec_error(rag_project: Callable[..., Any]) -> None:
    ws = rag_project(storage={"vector_store_url": "mongodb://127.0.0.1:27017"})
    with pytest.raises(SpecError) as exc:
        vector_store(ws)
    assert "vector_store_url" in exc.value.message
