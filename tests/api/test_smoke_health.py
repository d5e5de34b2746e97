from tests.lambda_client import LambdaClient


def test_health(client: LambdaClient, store: str) -> None:
    reply = client.get("/health")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert body["schema_version"] >= 3
    assert body["store"] == ("sqlite" if store == "sqlite" else "postgresql")
    assert reply.headers["x-request-id"]
