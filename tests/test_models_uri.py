"""Model URIs: every form parses to what it names; bad ones are refused clearly."""

from __future__ import annotations

import pytest

from casstore.exceptions import InvalidDigestError, InvalidInputError
from casstore.models.uri import ModelURI, parse_model_uri

RUN = "0123456789abcdef0123456789abcdef"
DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"runs:/{RUN}/model", ModelURI("runs", run_id=RUN, path="model")),
        (f"runs:/{RUN}/nested/model/", ModelURI("runs", run_id=RUN, path="nested/model")),
        ("models:/fraud/7", ModelURI("models", name="fraud", version=7)),
        ("models:/fraud/latest", ModelURI("models", name="fraud", latest=True)),
        ("models:/fraud@champion", ModelURI("models", name="fraud", alias="champion")),
        ("models:/production-classifier/1", ModelURI("models", name="production-classifier", version=1)),
        ("models:/my model/2", ModelURI("models", name="my model", version=2)),
        (f"cas:{DIGEST}", ModelURI("cas", digest=DIGEST)),
        (f"cas:{DIGEST.upper()}", ModelURI("cas", digest=DIGEST)),
    ],
)
def test_model_uri_forms(uri: str, expected: ModelURI) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "non-empty"),
        ("runs:/notarunid/model", "not a run id"),
        (f"runs:/{RUN}", "no model"),
        (f"runs:/{RUN}/../escape", "refused"),
        ("models:/fraud", "needs a version"),
        ("models:/fraud/0", "neither a version"),
        ("models:/fraud/Production", "stages are not supported"),
        ("models:/fraud@", "invalid alias"),
        ("s3://bucket/model", "unknown scheme"),
        ("/local/dir", "unknown scheme"),
    ],
)
def test_bad_model_uris_say_why(uri: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why):
        parse_model_uri(uri)


def test_cas_uri_needs_a_digest() -> None:
    with pytest.raises(InvalidDigestError):
        parse_model_uri("cas:1234")
