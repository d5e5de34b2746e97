"""Optional LLM summarisers: an OpenAI-compatible chat endpoint or Bedrock's Converse API.

The LLM is given what the extractive summariser found (the themes and their best statements)
rather than every memory, so the prompt stays small however much a user stored. Any failure,
an empty answer included, raises SummaryError and the caller keeps the extractive summary:
a summary is never worse for an LLM being configured. No retries here: a retry would hold
a request (or the maintenance run) for seconds, where falling back costs nothing.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Any, Protocol

from core.curation.summaries.extractive import Extract
from core.kernel.config import SummarySettings
from core.kernel.errors import MnemoError
from core.retrieval.context import estimate_tokens

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
# Statements per theme shown to the model: more material than the extractive text holds.
_STATEMENTS_PER_THEME = 12
_PROMPT_CHARS = 24_000
_ERROR_CHARS = 300

SYSTEM_PROMPT = (
    "You write a short profile of one user of an AI assistant from the memories stored about "
    "them: who they are, their preferences, goals, recent activity and key facts. Use only "
    "what the memories say; never guess. Plain sentences, no heading, no preamble, no list "
    "markers. Stay within {max_tokens} tokens."
)


class SummaryError(MnemoError):
    code = "summary_failed"


class ChatModel(Protocol):
    @property
    def name(self) -> str: ...

    def complete(self, system: str, prompt: str, max_tokens: int) -> str: ...


def prompt_from(extract: Extract) -> str:
    """The memories as the extractive pass grouped them, best statements first."""
    lines = []
    for theme in extract.themes:
        lines.append(f"## {theme.label} ({theme.memory_count} memories)")
        lines.extend(f"- {s.text}" for s in theme.ranked[:_STATEMENTS_PER_THEME])
    return "\n".join(lines)[:_PROMPT_CHARS]


def fit(text: str, max_tokens: int) -> str:
    """The model's answer within the budget: cut after the last whole sentence that fits."""
    text = "\n".join(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())
    if estimate_tokens(text) <= max_tokens:
        return text
    room = text.encode()[: max_tokens * 4 - 3].decode(errors="ignore")
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", room)]
    if ends:
        return room[: ends[-1]]
    return room.rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"


def summarise(model: ChatModel, extract: Extract, max_tokens: int) -> str:
    if not extract.themes:
        raise SummaryError("nothing to summarise")
    answer = model.complete(
        SYSTEM_PROMPT.format(max_tokens=max_tokens), prompt_from(extract), max_tokens
    )
    text = fit(answer, max_tokens)
    if not text.strip():
        raise SummaryError(f"{model.name} returned an empty summary")
    return text


class OpenAIChat:
    """POST {base_url}/chat/completions, standard library only (as the OpenAI embedder).

    `error` is the MnemoError its failures raise: summaries fall back on theirs, conversation
    extraction (core/app/extraction.py) reports its own."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None,
        timeout: float = 10.0,
        error: type[MnemoError] = SummaryError,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the LLM base URL must be http or https, got {base_url!r}")
        self.error = error
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self.timeout = timeout

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def complete(self, system: str, prompt: str, max_tokens: int) -> str:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # The URL is the operator's configuration (checked to be http or https), not user input.
        request = urllib.request.Request(  # noqa: S310
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:_ERROR_CHARS].decode(errors="replace")
            raise self.error(
                f"{self.url} answered HTTP {error.code}: {detail}", details={"status": error.code}
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            raise self.error(f"{self.url} could not be reached: {reason}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise self.error(f"{self.url} answered without a message: {error!r}") from None
        if not isinstance(content, str):
            raise self.error(f"{self.url} answered with a non-text message")
        return content


class BedrockChat:
    """Bedrock's Converse API: one request shape for every chat model Bedrock hosts."""

    def __init__(self, *, model: str, client: Any, error: type[MnemoError] = SummaryError) -> None:
        self.model = model
        self._client = client
        self.error = error

    @property
    def name(self) -> str:
        return f"bedrock:{self.model}"

    def complete(self, system: str, prompt: str, max_tokens: int) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.converse(
                modelId=self.model,
                system=[{"text": system}],
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": max_tokens, "temperature": 0.0},
            )
        except ClientError as error:
            info = error.response.get("Error", {})
            raise self.error(
                f"Bedrock {self.model} refused: {info.get('Code')}: {info.get('Message')}"
            ) from None
        except BotoCoreError as error:
            raise self.error(f"Bedrock {self.model} could not be reached: {error}") from None
        try:
            parts = response["output"]["message"]["content"]
            return "".join(p["text"] for p in parts if "text" in p)
        except (KeyError, TypeError) as error:
            raise self.error(f"Bedrock {self.model} answered without text: {error!r}") from None


@lru_cache(maxsize=4)
def chat_model(settings: SummarySettings) -> ChatModel | None:
    """The configured model, or None for the extractive summariser (one per settings: a boto3
    client takes a while to build)."""
    if settings.summarizer not in ("openai", "bedrock"):
        return None
    return build_chat(
        settings.summarizer,
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        timeout=settings.llm_timeout_seconds,
        bedrock_region=settings.bedrock_region,
        error=SummaryError,
    )


def build_chat(
    kind: str,
    *,
    model: str | None,
    base_url: str,
    api_key: str | None,
    timeout: float,
    bedrock_region: str | None,
    error: type[MnemoError],
) -> ChatModel:
    """An OpenAI-compatible or Bedrock chat model whose failures raise `error`."""
    if kind == "openai":
        return OpenAIChat(
            model=model or DEFAULT_OPENAI_MODEL,
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            error=error,
        )
    if kind == "bedrock":
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise error("an LLM on Bedrock needs boto3: install mnemo-server[aws]") from None
        config = Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}
        )
        client = boto3.client("bedrock-runtime", region_name=bedrock_region, config=config)
        return BedrockChat(model=model or DEFAULT_BEDROCK_MODEL, client=client, error=error)
    raise ValueError(f"no chat model of kind {kind!r}")
