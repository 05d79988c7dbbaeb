"""Schemathesis runs the gateway's own OpenAPI schema against it, the infer endpoint included:
every operation gets generated requests (valid and invalid), and every answer must be no 5xx and
conform to the schema (status codes, content types, headers, bodies)."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

# Per operation, where parameters leave that many distinct requests. 100 and 400 (~2,500
# requests) made this the suite's slowest test (51 s in CI): every operation is still fuzzed.
EXAMPLES_PER_OPERATION = 25
INFER_EXAMPLES = 100  # the infer endpoint: where hostile bodies land
# Every check runs but "schema-valid data must be accepted": OpenAPI cannot say which tensor
# shapes a model takes or which parameter ranges a routing policy accepts, so a 400 for those
# is the right answer to a schema-valid request (it still must be documented and well-formed).


@pytest.fixture(scope="module")
def gateway_url(model_server, small_repo, tmp_path_factory):
    settings_ = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("fuzz"),
        repo=small_repo,
        max_body_mb=1.0,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings_)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(gateway_url):
    return schemathesis.openapi.from_url(gateway_url + "/openapi.json")


def _fuzz(operation, calls: Counter) -> str | None:
    """Run the operation's generated cases; the first failure's report, or None."""
    examples = INFER_EXAMPLES if operation.path.endswith("/infer") else EXAMPLES_PER_OPERATION

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )  # no shrinking: report as found
    def run(case) -> None:
        calls[operation.label] += 1
        case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance])

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a group of check failures
        return f"{operation.label}: {exc}"
    return None


@pytest.mark.slow
def test_the_gateway_conforms_to_its_openapi_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(op.path.endswith("/infer") for op in operations)  # the infer endpoint is in it
    calls: Counter = Counter()
    failures = [f for f in (_fuzz(op, calls) for op in operations) if f]
    assert not failures, "\n\n".join(failures)
    assert set(calls) == {op.label for op in operations}  # every operation was called
    infer = [op.label for op in operations if op.path.endswith("/infer")]
    assert all(calls[label] >= INFER_EXAMPLES // 2 for label in infer), calls
    assert sum(calls.values()) >= 300  # hundreds of requests, not a handful
