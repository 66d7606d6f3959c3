"""The prompt for one feedback request (docs/backend-contract.md), from a configurable template.

A template is text with `$personal_challenges` and `$group_challenges` placeholders (Python's
`string.Template`: `$$` is a literal dollar). `$` rather than `{}` so that prompt writers can put
JSON examples or braces in a template without escaping them.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template

from llm_common.contracts import FeedbackRequest, GroupChallenge, PersonalChallenge

SYSTEM_PROMPT = "너는 피드백 어시스턴트야."

DEFAULT_TEMPLATE = """\
아래는 사용자의 이번 주 챌린지 기록이야.
이 기록을 바탕으로 사용자에게 보낼 짧은 피드백을 한국어 5~6문장으로 써 줘.
1. 이번 주 챌린지를 요약하면서 칭찬과 격려를 담아 줘.
2. 친근하고 밝은 말투로 쓰고, 이모지(예: 😊 🌱 🎉)를 몇 개만 섞어 줘.
3. 성공한 챌린지는 노력을 인정해 주고, 실패한 챌린지는 위로하면서 다음 기회를 응원해 줘.
4. 개인 챌린지와 그룹 챌린지 기록을 따로 나열하지 말고 자연스럽게 엮어서 평가해 줘.

개인 챌린지:
$personal_challenges

그룹 챌린지:
$group_challenges
"""

PLACEHOLDERS = frozenset({"personal_challenges", "group_challenges"})
UNTITLED = "(제목 없음)"
RECORD_LINE = re.compile(r"^[ \t]*(?:- .+ \((?:성공|실패)\)|기간: |이번 주 성공률: )", re.MULTILINE)
"""A line written as the prompt lists a record (`personal_lines`, `_group_entry`): a base model
copies the form with challenges of its own, which no run shared with this member's record finds
(6 of production's 10 passing drafts on the local model were such lists)."""
TITLE_GAP = "\x00"
"""Stands for a title in `Prompt.record`: no draft has it, so no shared run crosses a title."""
NO_PERSONAL = "이번 주 개인 챌린지 기록이 없어요."
NO_GROUP = "이번 주 그룹 챌린지 기록이 없어요."
NO_SUBMISSIONS = "이번 주 인증 없음"


class InvalidTemplate(ValueError):
    """The template has a placeholder the worker does not fill, or a stray `$`."""


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    instructions: str
    """The system prompt and the template's own text, without the member's record: what a
    draft must not hand back (content.py)."""
    record: str
    """The member's record as the prompt lists it, each title replaced by `TITLE_GAP`: its
    frame (`기간: …`, `이번 주 성공률: …`), which a draft must not hand back either, while it may
    name the challenges."""


class PromptTemplate:
    """Renders a request into the system and user prompts; validated when loaded."""

    def __init__(self, text: str = DEFAULT_TEMPLATE) -> None:
        template = Template(text)
        if not template.is_valid():
            raise InvalidTemplate("the prompt template has a `$` that starts no placeholder")
        unknown = set(template.get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise InvalidTemplate(
                f"unknown placeholders {sorted(unknown)}; available: {sorted(PLACEHOLDERS)}"
            )
        self._template = template
        own_text = template.substitute({name: "" for name in PLACEHOLDERS})
        self._instructions = f"{SYSTEM_PROMPT}\n{own_text}"

    @classmethod
    def from_file(cls, path: Path | None) -> "PromptTemplate":
        return cls(path.read_text(encoding="utf-8")) if path else cls()

    def render(self, request: FeedbackRequest) -> Prompt:
        user = self._template.substitute(
            personal_challenges=personal_lines(request.personal_challenges),
            group_challenges=group_lines(request.group_challenges),
        )
        record = "\n".join(
            (
                personal_lines(request.personal_challenges, _gap),
                group_lines(request.group_challenges, _gap),
            )
        )
        return Prompt(
            system=SYSTEM_PROMPT, user=user, instructions=self._instructions, record=record
        )


Titles = Callable[[str | None], str]
"""How a challenge's title is written into the record."""


def personal_lines(challenges: Sequence[PersonalChallenge], title: Titles | None = None) -> str:
    """`- {title} (성공|실패)`, one line per challenge."""
    if not challenges:
        return NO_PERSONAL
    write = title or _title
    return "\n".join(
        f"- {write(c.title)} ({'성공' if c.is_success else '실패'})" for c in challenges
    )


def group_lines(challenges: Sequence[GroupChallenge], title: Titles | None = None) -> str:
    """Each challenge with its period and the success rate of the submissions the request carries.

    The backend already picked the week's submissions; counting them again against this
    server's clock would drop valid ones whenever the clocks or time zones differ.
    """
    if not challenges:
        return NO_GROUP
    return "\n".join(_group_entry(c, title or _title) for c in challenges)


def _group_entry(challenge: GroupChallenge, title: Titles) -> str:
    total = len(challenge.submissions)
    rate = f"{challenge.succeeded}/{total}" + ("" if total else f" ({NO_SUBMISSIONS})")
    return (
        f"- {title(challenge.title)}\n"
        f"  기간: {_period(challenge.start_date, challenge.end_date)}\n"
        f"  이번 주 성공률: {rate}"
    )


def _period(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return "정보 없음"
    return f"{_day(start)} ~ {_day(end)}"


def _day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else "미정"


def _gap(title: str | None) -> str:
    return TITLE_GAP


def _title(title: str | None) -> str:
    # One line per challenge: a title with line breaks must not add lines of its own.
    cleaned = " ".join((title or "").split())
    return cleaned or UNTITLED
