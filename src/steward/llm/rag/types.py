"""Result types of the RAG pipeline (plain dataclasses, JSON-friendly through :func:`dataclasses.asdict`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Answer", "Citation", "IngestReport", "Retrieved"]


@dataclass(frozen=True)
class Retrieved:
    """One retrieved chunk with the scores that ranked it.

    Attributes:
        chunk_id: ``doc_id#section#n``, stable across ingests.
        doc_id: The source document (``stdlib:json``).
        section: The section id inside the document (``json.dumps``).
        title: The section title (a signature for stdlib sections).
        text: The chunk text.
        score: Reciprocal-rank-fusion score (higher is better).
        vector_score: Cosine similarity to the question, when the vector retriever found it.
        keyword_score: BM25 score, when the keyword retriever found it.
    """

    chunk_id: str
    doc_id: str
    section: str
    title: str
    text: str
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None

    @property
    def source(self) -> str:
        """``doc_id#section``: the unit eval sets refer to."""
        return f"{self.doc_id}#{self.section}"


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer: ``[n]`` in the text refers to it."""

    n: int
    doc_id: str
    section: str
    chunk_id: str
    score: float
    snippet: str


@dataclass
class Answer:
    """An answer with its sources.

    Attributes:
        question: The question as answered (after PII redaction, if any).
        text: The answer; cites sources as ``[n]``. "I don't know..." when retrieval is weak.
        citations: The numbered sources given to the answerer (``[n]`` refers to ``citations[n-1]``).
        grounded: True when the share of answer sentences supported by the cited chunks
            reaches the grounding guard's ``min_support``.
        retrieved: Every retrieved chunk, best first.
        abstained: True when the answer is "I don't know".
        confidence: The best cosine similarity between the question and a chunk.
        mode: ``extractive`` (offline), ``llm`` (through the gateway) or ``abstain``.
        support: Share of answer sentences supported by the cited chunks.
        flags: Guardrail findings (``pii_input:EMAIL``, ``ungrounded:2``, ...).
        prompt: The grounded prompt (also built offline, for inspection).
    """

    question: str
    text: str
    citations: list[Citation]
    grounded: bool
    retrieved: list[Retrieved]
    abstained: bool = False
    confidence: float = 0.0
    mode: str = "extractive"
    support: float = 0.0
    flags: list[str] = field(default_factory=list)
    prompt: str = ""


@dataclass
class IngestReport:
    """What an ingest changed.

    Attributes:
        collection: The collection written.
        documents: Documents in the corpus.
        unchanged: Documents whose content hash matched: skipped, nothing embedded.
        added: New documents.
        updated: Changed documents (their old chunks were replaced).
        removed: Documents gone from the corpus (their chunks were deleted).
        chunks_added: Chunks embedded and written.
        chunks_total: Chunks in the collection afterwards.
        seconds: Wall time.
        embed_seconds: Time spent embedding.
    """

    collection: str
    documents: int = 0
    unchanged: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    chunks_added: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        """Chunks written per second of wall time."""
        return self.chunks_added / self.seconds if self.seconds > 0 else 0.0
