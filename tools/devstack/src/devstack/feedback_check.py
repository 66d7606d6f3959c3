"""`make feedback-check`: what a member would read, for twenty distinct weekly records.

Each record goes through the worker's own prompt template, LLM client and content checks
(`FeedbackWriter.drafts`: two drafts at most, as the worker writes them), against the LLM at
`LLM_BASE_URL` (`make run`'s by default), configured by the worker's own variables (LLM_*,
PROMPT_TEMPLATE_FILE, CONTENT_*). For the local model the local stack's settings are the
defaults (devstack.local_llm.base_model_worker_env). It prints every draft with its verdict,
then how many records got a feedback that passed every check, and which checks refused drafts.
"""

import argparse
import asyncio
import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from feedback_worker.content import Review
from feedback_worker.llm import FeedbackWriter, content_rules
from feedback_worker.prompt import PromptTemplate
from feedback_worker.settings import WorkerSettings
from llm_common.contracts import FeedbackRequest
from llm_common.contracts.example import varied_weekly_records

from devstack.local_llm import base_model_worker_env
from devstack.local_model import MODEL_ALIAS
from devstack.stack import StackConfig

NOT_DELIVERED = "unused: feedback-check delivers nothing"
TIMEOUT_S = 1200
"""LLM_TIMEOUT_SECONDS unless set: all twenty records are asked at once, and vLLM on 2 CPU cores
shared with two other vLLMs took 5 to 6 minutes to answer them at a load average of 10, over
10 minutes at 18 (the worker's default, 60 s, cut every call)."""


@dataclass(frozen=True)
class Checked:
    """One record's drafts, judged; the last one is what the worker would deliver if it passed."""

    member_id: int
    drafts: list[Review]

    @property
    def passed(self) -> bool:
        return self.drafts[-1].failed is None


def check_settings(built_in_prompt: bool = False) -> WorkerSettings:
    """The worker's settings from the environment; for the local model, the local stack's
    template, stop strings and max_tokens unless the environment sets them. `built_in_prompt`:
    production's defaults instead (the built-in template, no stop strings)."""
    local = {
        "LLM_MODEL": MODEL_ALIAS,
        **base_model_worker_env(),
        "LLM_MAX_TOKENS": str(StackConfig.llm_max_tokens),
    }
    model = os.environ.get("LLM_MODEL") or MODEL_ALIAS
    wanted = {"LLM_TIMEOUT_SECONDS": str(TIMEOUT_S), **(local if model == MODEL_ALIAS else {})}
    defaults = {name.lower(): value for name, value in wanted.items() if name not in os.environ}
    init: dict[str, Any] = {
        **defaults,
        **({"prompt_template_file": None, "llm_stop": []} if built_in_prompt else {}),
        "feedback_queue_url": NOT_DELIVERED,
        "result_queue_url": NOT_DELIVERED,
        "callback_url": "",
    }
    return WorkerSettings(**init)


async def check_records(settings: WorkerSettings, records: list[FeedbackRequest]) -> list[Checked]:
    """Every record's drafts, the records asked at once (vLLM batches them)."""
    template = PromptTemplate.from_file(settings.prompt_template_file)
    writer = FeedbackWriter.from_settings(settings)
    try:
        drafts = await asyncio.gather(
            *(writer.drafts(template.render(record)) for record in records)
        )
    finally:
        await writer.close()
    return [Checked(r.member_id, d.reviews) for r, d in zip(records, drafts, strict=True)]


def report(checked: list[Checked], settings: WorkerSettings) -> str:
    """Every draft with its verdict, then the pass rate and the refusals per check."""
    rules = content_rules(settings)
    lines: list[str] = []
    for record in checked:
        verdict = "FEEDBACK" if record.passed else "NO FEEDBACK"
        lines.append(f"member {record.member_id}: {verdict}")
        for number, draft in enumerate(record.drafts, start=1):
            why = (
                "passes every check"
                if draft.failed is None
                else (f"refused ({draft.failed}): {rules.reason(draft.failed)}")
            )
            lines.append(f"  draft {number} {why}")
            lines.extend(f"    | {line}" for line in draft.text.splitlines() or [""])
    refusals = Counter(d.failed for r in checked for d in r.drafts if d.failed is not None)
    first = sum(1 for r in checked if r.drafts[0].failed is None)
    lines.append(
        f"passed: {sum(r.passed for r in checked)} of {len(checked)} records "
        f"({first} on the first draft)"
    )
    lines.append(
        "refused drafts: "
        + (", ".join(f"{check} {count}" for check, count in refusals.most_common()) or "none")
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="feedback-check", description=__doc__)
    parser.add_argument(
        "--built-in-prompt",
        action="store_true",
        help="the worker's built-in template and no stop strings (production's defaults)",
    )
    args = parser.parse_args()
    settings = check_settings(args.built_in_prompt)
    records = [FeedbackRequest.model_validate(r) for r in varied_weekly_records()]
    print(
        f"{len(records)} records → {settings.llm_base_url} ({settings.llm_model}), template "
        f"{settings.prompt_template_file or 'built in'}, stop {settings.llm_stop}, "
        f"max_tokens {settings.llm_max_tokens}, temperature {settings.llm_temperature}",
        flush=True,
    )
    checked = asyncio.run(check_records(settings, records))
    print(report(checked, settings))
    return 0 if all(r.passed for r in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
