"""Schemathesis on the app's own OpenAPI schema, every operation, for a tiny table and a tiny text run,
with an API key and without: no generated request gets a 5xx, valid, invalid, or valid but for one of the
values that once got 500s (NaN, Infinity, a lone surrogate, 1e308: fuzzkit.py). A bounded, derandomized number of cases
(the same ones on every run); benchmarks/serve_fuzz.py runs many more."""

import pytest

from danlu.serve.app import ServeSettings, create_app
from fuzzkit import fuzz

EXAMPLES = 40  # per operation and kind
# The run with a key sends each of its cases with the key (through validation, as a keyless app does) and
# without it (a 401), so it carries the full count; the keyless app is checked on fewer for what is its own:
# no 5xx and never a 401.
EXAMPLES_WITHOUT_KEY = 12


@pytest.mark.parametrize("key", [None, "fuzz-key"], ids=["no key", "key"])
@pytest.mark.parametrize("kind", ["table", "text"])
def test_no_generated_request_gets_a_5xx(runners, kind, key):
    statuses = fuzz(create_app(runners[kind], ServeSettings(api_key=key)), key, EXAMPLES if key else EXAMPLES_WITHOUT_KEY)
    assert not [code for code in statuses if code >= 500], statuses
    assert statuses[200] and statuses[422], statuses  # both valid predictions and refusals were made
    assert bool(statuses[401]) == bool(key), statuses
