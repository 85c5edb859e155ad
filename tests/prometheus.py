"""Reading ``GET /metrics`` in the tests, with ``prometheus_client``'s own parser."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

#: Sample values by (sample name, its labels).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient, **headers: str) -> Samples:
    """``GET /metrics`` (it must answer 200), parsed."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Samples:
    """Every sample of a scrape; each metric must be named ``pointpass_...``."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("pointpass_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None when the scrape has none."""
    return samples.get((name, frozenset(labels.items())))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much the sample ``name`` with ``labels`` grew between two scrapes."""
    return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)
