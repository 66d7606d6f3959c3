"""Read a service's Prometheus metrics the way Prometheus does: over HTTP, as exposition text."""

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One scrape of a `/metrics` page."""

    text: str

    @classmethod
    def of(cls, url: str) -> "Scrape":
        response = httpx.get(url, timeout=5)
        response.raise_for_status()
        return cls(response.text)

    def families(self) -> dict[str, str]:
        """Every metric family on the page, by name, with its type."""
        return {family.name: family.type for family in text_string_to_metric_families(self.text)}

    def value(self, sample: str, **labels: str) -> float:
        """The sample `sample` with exactly `labels` (0 when the page has no such series)."""
        for family in text_string_to_metric_families(self.text):
            for found in family.samples:
                if found.name == sample and found.labels == labels:
                    return float(found.value)
        return 0.0
