"""The published OpenAPI document, and a schemathesis fuzz run against a live Serve app.

Fast part (no Ray): the document validates against the OpenAPI 3.1 meta-schema, every `$ref`
resolves inside it (the request schema once pointed at a missing `#/$defs/Canvas`, so
schema-driven tools could not build a body), and bodies generated from the request schema agree
with the validator: schema-valid ones are accepted (or refused only for their random image),
schema-invalid ones are refused with a 4xx.

Slow part: schemathesis generates >= 1,000 requests, valid and invalid, for every operation
(admin ones with the token) against a real Serve app over HTTP. None may get a 5xx, none may hang.
Shrinking is off so the run's time stays bounded; every failure is collected and shown as curl.
"""

import json
import time
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from conftest import free_port, tiny_serving_artifact

TOKEN = "test-admin-token-0a91"
MIN_REQUESTS = 1000
# requests per (operation, mode); operations without parameters repeat the same request, and
# hypothesis stops them early once it has nothing new to try
BUDGET = {("POST", "/v1/layouts"): 450, ("POST", "/admin/rollout/start"): 80}
OTHER_BUDGET = 8
OPEN_BUDGET = 150  # per operation, with extra fields allowed (see _open_bodies)
REQUEST_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def spec():
    from serving.app import http_app
    return http_app.openapi()


def _refs(node, path="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from _refs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, f"{path}/{i}")


def _resolve(doc, ref: str):
    assert ref.startswith("#/"), f"external reference {ref}"
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


# ----------------------------------------------------------------------------- the document


def test_document_validates_and_every_ref_resolves(spec):
    import schemathesis
    from jsonschema import Draft202012Validator

    schemathesis.openapi.from_dict(spec).validate()  # the OpenAPI 3.1 meta-schema
    refs = list(_refs(spec))
    assert refs, "expected component references"
    for where, ref in refs:
        _resolve(spec, ref)  # raises naming the reference and where it is
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                Draft202012Validator.check_schema(body)
                assert "$defs" not in json.dumps(body), f"{method} {path}: a $defs reference left"


def test_documented_bodies_cover_the_validated_fields(spec):
    from layoutray.model.request import FIELDS
    from serving.rollout import START_FIELDS

    def props(path):
        return set(spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"])
    assert props("/v1/layouts") == set(FIELDS)
    assert props("/admin/rollout/start") == set(START_FIELDS)
    responses = spec["paths"]["/v1/layouts"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(responses)


def _operation(spec, method, path):
    import schemathesis
    return schemathesis.openapi.from_dict(spec)[path][method]


def test_schema_valid_bodies_are_accepted(spec):
    from layoutray.model.request import ApiError, Limits, validate_payload
    from schemathesis import GenerationMode

    strategy = _operation(spec, "POST", "/v1/layouts").as_strategy(GenerationMode.POSITIVE)

    @settings(max_examples=150, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        try:
            validate_payload(case.body, Limits())
        except ApiError as e:  # a generated image is random text, not a PNG
            # `fixed` boxes must lie on the canvas and be among `elements`: rules across fields,
            # which the schema's descriptions state and JSON Schema cannot check
            cross = e.field.startswith("fixed[")
            assert (e.field == "image" or cross) and 400 <= e.status < 500, (case.body, e.body())
    check()


def test_schema_invalid_bodies_are_refused(spec):
    from layoutray.model.request import ApiError, Limits, validate_payload
    from schemathesis import GenerationMode
    from schemathesis.core.parameters import ParameterLocation

    strategy = _operation(spec, "POST", "/v1/layouts").as_strategy(GenerationMode.NEGATIVE)

    @settings(max_examples=150, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        if case.meta is None or not case.meta.is_negative_at(ParameterLocation.BODY):
            return  # a negative case that broke something other than the body (a header, the media type)
        with pytest.raises(ApiError) as ei:
            validate_payload(case.body, Limits())
        assert 400 <= ei.value.status < 500
    check()


# ----------------------------------------------------------------------------- live fuzzing


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    from ray import serve

    from serving.deploy import app_config, deploy

    root = tmp_path_factory.mktemp("openapi")
    stable = tiny_serving_artifact(root / "stable", seed=1)
    canary = tiny_serving_artifact(root / "canary", seed=2)
    (root / "token").write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    router = {"admin_token_file": str(root / "token"), "max_body_bytes": 65536, "model_load_timeout_s": 20.0}
    deploy([app_config("layoutray", "/", {"stable_model": stable, "canary_model": canary,
                                          "state_dir": str(root / "state"), "model_num_cpus": 0.5},
                       router=router)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while requests.get(url + "/healthz", timeout=10).status_code != 200:
        assert time.time() < deadline, "healthz"
        time.sleep(0.2)
    yield url
    serve.shutdown()


class Tally:
    """Every request the fuzzer sent and every one that failed (5xx, no answer, too slow)."""

    def __init__(self, base_url: str):
        self.base_url, self.sent, self.failures, self.slowest = base_url, 0, [], 0.0
        self.statuses: Counter = Counter()  # (method path, status): printed, to show what was covered
        self.non_ascii_fields = 0  # bodies with a field name that is not ASCII (once a 500)

    def send(self, case, session):
        t0 = time.perf_counter()
        try:
            r = case.call(base_url=self.base_url, session=session, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=REQUEST_TIMEOUT_S)
            status = r.status_code
        except requests.RequestException as e:
            status = f"{type(e).__name__}"
        self.sent += 1
        if isinstance(case.body, dict) and any(not str(k).isascii() for k in case.body):
            self.non_ascii_fields += 1
        self.statuses[(f"{case.method} {case.path}", status)] += 1
        self.slowest = max(self.slowest, time.perf_counter() - t0)
        if not isinstance(status, int) or status >= 500:
            self.failures.append((status, case.as_curl_command()[:2000]))


def _fuzz(op, mode, n, tally, session):
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(mode))
    def run(case):
        tally.send(case, session)
    try:
        run()
    except Unsatisfiable:  # negative mode on an operation with no parameters: nothing to break
        pass


def _open_bodies(spec: dict) -> dict:
    """The document with `additionalProperties: false` dropped everywhere: schema-valid bodies then
    carry arbitrary extra fields (non-ASCII names included), as in the study that found the 500s;
    the strict document alone seldom generates them."""
    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    return walk(spec)


@pytest.mark.slow
def test_fuzz_live_app_no_5xx_no_hang(live):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(live + "/openapi.json")
    tally, session, t0 = Tally(live), requests.Session(), time.perf_counter()
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, BUDGET.get((op.method.upper(), op.path), OTHER_BUDGET), tally, session)
    loose = schemathesis.openapi.from_dict(_open_bodies(requests.get(live + "/openapi.json", timeout=30).json()))
    for path in ("/v1/layouts", "/admin/rollout/start"):
        _fuzz(loose[path]["POST"], GenerationMode.POSITIVE, OPEN_BUDGET, tally, session)
    # Layouts once more until the run holds MIN_REQUESTS (hypothesis stops an operation early
    # when it finds its space exhausted).
    layouts = schema["/v1/layouts"]["POST"]
    while tally.sent < MIN_REQUESTS:
        _fuzz(layouts, GenerationMode.NEGATIVE, MIN_REQUESTS - tally.sent, tally, session)
    elapsed = time.perf_counter() - t0
    print(f"schemathesis: {tally.sent} requests ({tally.non_ascii_fields} with non-ASCII field names) in "
          f"{elapsed:.0f} s, slowest {tally.slowest:.1f} s, "
          f"{len(tally.failures)} failures; by operation and status: {sorted(tally.statuses.items())}")
    assert not tally.failures, "\n\n".join(f"{s}: {c}" for s, c in tally.failures[:10])
    assert tally.sent >= MIN_REQUESTS
    assert requests.get(live + "/healthz", timeout=10).status_code == 200  # still serving
