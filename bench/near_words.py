"""Near-word lookups' CPU per search: this tree's `core/retrieval/near_words.py` against another
version of it, on one SQLite file holding two brains (bench.search's corpus). LoCoMo questions
are asked of the second brain, with the memo of corrections cleared before each, in alternating
rounds.

    git show <commit>:core/retrieval/near_words.py > /tmp/near_words_old.py
    .venv/bin/python -m bench.near_words --baseline /tmp/near_words_old.py [--size 4000]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from types import ModuleType

from sqlalchemy import text

from bench.common import context, event, make_handler, scratch, sqlite_url
from bench.common import new_tenant as new_brain
from bench.search import _corpus, _texts


def _module(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_near_words", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--size", type=int, default=4000, help="memories per brain")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from core.kernel.db.engine import get_engine
    from core.retrieval import near_words
    from core.retrieval.lexical import query_terms

    versions = {"baseline": _module(args.baseline), "this tree": near_words}
    turns, questions = _corpus()
    with scratch("near-words") as folder:
        url = sqlite_url(folder)
        handler = make_handler(url)
        slugs = []
        for _ in range(2):
            slug, key = new_brain(url)
            texts = _texts(turns, args.size)
            for i in range(0, len(texts), 500):
                body = {"memories": [{"content": c} for c in texts[i : i + 500]]}
                reply = handler(
                    event("POST", "/v1/memories/batch", key=key, json_body=body), context()
                )
                assert reply["statusCode"] == 201, reply
            slugs.append(slug)
        engine = get_engine(url)
        with engine.connect() as conn:
            brain = conn.execute(
                text("SELECT id FROM brains WHERE slug = :slug"), {"slug": slugs[1]}
            ).scalar_one()
            asked = [query_terms(q) for q in questions[: args.questions]]
            times: dict[str, list[float]] = {name: [] for name in versions}
            for _ in range(args.rounds):
                for name, module in versions.items():
                    for terms in asked:
                        module._remembered = module._Memo(4096, 300.0)
                        start = time.process_time()
                        module.correct(conn, terms, brain_id=brain)
                        times[name].append(time.process_time() - start)
    print("| version | p50 ms | p95 ms | mean ms |\n|---|---|---|---|")
    for name, spent in times.items():
        spent.sort()
        p50, p95 = spent[len(spent) // 2], spent[int(len(spent) * 0.95)]
        mean = statistics.mean(spent)
        print(f"| {name} | {1000 * p50:.3f} | {1000 * p95:.3f} | {1000 * mean:.3f} |")


if __name__ == "__main__":
    main()
