"""Corpus loaders, chunking and BM25: no embedding model needed (only its tokenizer)."""

from __future__ import annotations

from pathlib import Path

from steward.llm.embeddings import MAX_TOKENS, get_embedder
from steward.llm.rag.bm25 import BM25Index, tokenize
from steward.llm.rag.chunking import chunk_document
from steward.llm.rag.corpus import Document, Section, load_path, markdown_sections, parse_html, stdlib_documents

HTML = """<html><head><title>json — JSON encoder and decoder</title><script>var x = "ignore me";</script></head>
<body><nav>Navigation junk</nav>
<section id="module-json"><h1>json — JSON encoder and decoder<a class="headerlink">¶</a></h1>
<p>JSON is a lightweight data interchange format.</p>
<section id="basic-usage"><h2>Basic Usage</h2>
<dl><dt id="json.dumps">json.dumps(obj)</dt><dd><p>Serialize <em>obj</em> to a JSON formatted str.</p></dd></dl>
</section>
<section id="basic-usage-2"><h2>Exceptions</h2><p>JSONDecodeError is raised on bad input.</p></section>
</section></body></html>"""


def test_stdlib_documents_have_stable_ids_and_hashes() -> None:
    first = {d.doc_id: d for d in stdlib_documents(["json", "textwrap", "no_such_module_xyz"])}
    again = {d.doc_id: d for d in stdlib_documents(["json", "textwrap"])}
    assert set(first) == {"stdlib:json", "stdlib:textwrap"}  # the missing module is skipped, not fatal
    sections = {s.section_id for s in first["stdlib:json"].sections}
    assert {"json", "json.dumps", "json.loads", "json.JSONDecoder.decode"} <= sections
    dumps = next(s for s in first["stdlib:json"].sections if s.section_id == "json.dumps")
    assert dumps.title.startswith("function json.dumps(obj")
    assert "JSON formatted" in dumps.text
    for doc_id, doc in first.items():
        assert again[doc_id].doc_hash == doc.doc_hash


def test_document_hash_changes_with_content() -> None:
    a = Document("d", "T", [Section("s", "S", "one")])
    b = Document("d", "T", [Section("s", "S", "two")])
    assert a.doc_hash != b.doc_hash
    assert a.doc_hash == Document("d", "T", [Section("s", "S", "one")]).doc_hash


def test_parse_html_splits_at_headings_with_anchor_ids() -> None:
    title, sections = parse_html(HTML)
    assert title.startswith("json")
    by_id = {s.section_id: s for s in sections}
    assert "module-json" in by_id and "basic-usage" in by_id
    assert "lightweight data interchange" in by_id["module-json"].text
    assert "Serialize obj to a JSON formatted str." in by_id["basic-usage"].text
    assert by_id["basic-usage"].title == "Basic Usage"
    text = " ".join(s.text for s in sections)
    assert "ignore me" not in text and "Navigation junk" not in text and "¶" not in text


def test_markdown_sections_use_heading_paths_and_skip_code_fences() -> None:
    md = "# Runbook\nintro\n## Symptoms\nlatency up\n```bash\n# not a heading\nkubectl get pods\n```\n## Fix\nroll back\n### Verify\ncheck p95\n"
    title, sections = markdown_sections(md)
    assert title == "Runbook"
    ids = [s.section_id for s in sections]
    assert ids == ["runbook", "runbook/symptoms", "runbook/fix", "runbook/fix/verify"]
    assert "# not a heading" in sections[1].text


def test_load_path_reads_markdown_html_and_text(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# Guide\n## Install\npip install steward\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.html").write_text(HTML)
    (tmp_path / "notes.txt").write_text("First paragraph.\n\nSecond paragraph.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = {d.doc_id: d for d in load_path(tmp_path, prefix="docs")}
    assert set(docs) == {"docs:guide.md", "docs:sub/page.html", "docs:notes.txt"}
    assert [s.section_id for s in docs["docs:notes.txt"].sections] == ["p0", "p1"]


def test_chunking_windows_overlap_and_fit_the_model() -> None:
    tok = get_embedder().tokenizer
    words = " ".join(f"word{i}" for i in range(900))
    doc = Document("d1", "Doc", [Section("long", "A long section", words), Section("short", "Short", "just a few words")])
    chunks = chunk_document(doc, tok, chunk_tokens=128, overlap_tokens=16)
    long_chunks = [c for c in chunks if c.section == "long"]
    assert len(long_chunks) > 3
    assert [c.chunk_id for c in long_chunks[:2]] == ["d1#long#0", "d1#long#1"]
    for c in chunks:
        assert c.text.startswith(("A long section\n", "Short\n"))
        assert len(tok.encode(c.text, add_special_tokens=False).ids) <= min(128, MAX_TOKENS)
    # consecutive windows share their boundary tokens
    a = long_chunks[0].text.split()[-5:]
    b = long_chunks[1].text.split()
    assert any(w in b for w in a)
    # the whole text is covered: the last word is in the last window
    assert long_chunks[-1].text.rstrip().endswith("word899")
    assert chunks == chunk_document(doc, tok, chunk_tokens=128, overlap_tokens=16)  # deterministic ids and text


def test_bm25_ranks_by_rare_terms_and_splits_identifiers() -> None:
    assert "json.dumps" in tokenize("Use json.dumps here") and "dumps" in tokenize("json.dumps")
    idx = BM25Index(["json.dumps serializes to a string", "csv writer writes rows", "the the the the", "heapq pushes items"])
    top = idx.top("how do I use dumps", 2)
    assert top[0][0] == 0
    assert idx.top("writer rows", 1)[0][0] == 1
    assert idx.top("zzz unknown", 3) == []
