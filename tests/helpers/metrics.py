"""Scraping a test server's ``/metrics`` and reading samples by name and labels, with Prometheus' own parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample as ``(name, labels) -> value``."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly these labels; KeyError (with what there is) when missing."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            near = sorted(str(dict(l)) for n, l in self.samples if n == name)
            raise KeyError(f"no sample {name}{labels}; {name} has {near or 'no samples'}")
        return self.samples[key]

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())), default)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def parse(text: str) -> Scrape:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(text, samples)


async def scrape(server: Any) -> Scrape:
    """GET ``/metrics`` from a ``LiveServer`` (tests/helpers/webrtc_client.py); asserts 200 and the text format."""
    async with server.session.get(server.url + "/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version="), response.headers
        return parse(await response.text())
