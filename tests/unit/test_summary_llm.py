"""The LLM summariser without a server (core/curation/summaries/llm.py): an over-long answer cut
to the budget, and Bedrock's Converse API through botocore's Stubber. Against real local HTTP
servers, and its fallback to the extractive summary: tests/api/test_summaries.py."""

from __future__ import annotations

import pytest

from core.curation.summaries import llm
from core.curation.summaries.extractive import Candidate, extract
from core.embeddings import BuiltinEmbedder
from core.retrieval.context import estimate_tokens
from tests.summary_fixtures import DANA_UPDATES


def test_an_over_long_llm_answer_is_cut_to_the_budget() -> None:
    answer = "Dana cooks. " * 100
    fitted = llm.fit(answer, 20)
    assert estimate_tokens(fitted) <= 20 and fitted.endswith("cooks.")
    assert llm.fit("one two three " * 50, 10).endswith("…")


def test_bedrock_converse_request_and_answer() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    model = llm.BedrockChat(model="anthropic.claude-3-haiku-20240307-v1:0", client=client)
    rows = DANA_UPDATES
    items = [Candidate(id=f"m{i}", content=r[1], tags=tuple(r[4])) for i, r in enumerate(rows)]
    found = extract(items, BuiltinEmbedder().embed([r[1] for r in rows]), 200)
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"text": "Dana, vegetarian, in Lisbon."}],
                    }
                },
                "stopReason": "end_turn",
                "usage": {"inputTokens": 100, "outputTokens": 9, "totalTokens": 109},
                "metrics": {"latencyMs": 300},
            },
            {
                "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                "system": [{"text": llm.SYSTEM_PROMPT.format(max_tokens=200)}],
                "messages": [{"role": "user", "content": [{"text": llm.prompt_from(found)}]}],
                "inferenceConfig": {"maxTokens": 200, "temperature": 0.0},
            },
        )
        stub.add_client_error("converse", "ThrottlingException", "slow down")
        assert llm.summarise(model, found, 200) == "Dana, vegetarian, in Lisbon."
        with pytest.raises(llm.SummaryError, match="ThrottlingException"):
            llm.summarise(model, found, 200)
