"""Reading a `/metrics` page as Prometheus would: the whole page parsed with prometheus_client's
own parser (a page it cannot parse fails the test), then samples looked up by name and labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sisu.metrics import CONTENT_TYPE

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Page:
    """Every sample of a page: sample name → labels → value; and each family's type."""

    samples: dict[str, dict[Labels, float]]
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; KeyError when the page has none."""
        return self.samples[name][frozenset(labels.items())]

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        return self.samples.get(name, {}).get(frozenset(labels.items()), default)

    def series(self, name: str) -> dict[Labels, float]:
        """Every sample of this name (empty when the page has none)."""
        return dict(self.samples.get(name, {}))

    def by_label(self, name: str, label: str, **where: str) -> dict[str, float]:
        """label value → sample value, over the samples of `name` matching `where`."""
        found: dict[str, float] = {}
        for labels, value in self.samples.get(name, {}).items():
            d = dict(labels)
            if all(d.get(k) == v for k, v in where.items()) and label in d:
                found[d[label]] = value
        return found


def parse(text: str) -> Page:
    samples: dict[str, dict[Labels, float]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = frozenset(sample.labels.items())
            by_labels = samples.setdefault(sample.name, {})
            assert key not in by_labels, f"duplicate series {sample.name}{dict(key)}"
            by_labels[key] = sample.value
    return Page(samples, types)


def scrape(url: str, **headers: Any) -> Page:
    """GET a /metrics page over HTTP: a 200 in the text format, parsed whole."""
    r = httpx.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == CONTENT_TYPE, r.headers
    return parse(r.text)
