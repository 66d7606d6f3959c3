"""Whether a draft is fit to show a member (docs/configuration.md, Content checks).

The LLM's answer reaches a member as it is, so before delivery a draft must be:

1. not empty once zero-width characters and `<think>…</think>` reasoning are removed;
2. complete: a draft cut by `max_tokens` (finish_reason `length`) ends mid-sentence, so it is
   trimmed to its last complete sentence (one ending in `.!?…~` or in 다/요/죠 before a space,
   with what closes it: quotes, brackets, emoji); with no complete sentence it is `incomplete`;
3. not the prompt handed back: no run of `ECHO_RUN_CHARS` characters (spaces collapsed) taken
   from the prompt's own instructions. A base model, or any model served without its chat
   template, continues the prompt instead of answering it: Gemma 3 270M, a base model, wrote
   "아래는 사용자의 챌린지 기록을 바탕으로 … 5~6문장으로 써 줘." back to the member, and every other
   check passed it;
   not the member's record handed back (`record_echo`): no such run from the record's frame as
   the prompt lists it (`기간: 2025-06-09 ~ 2025-06-15`, `이번 주 성공률: 2/3`), titles left out, so
   a draft may name the challenges, and no line in the form the prompt lists records in
   (`- 요가 30분 (실패)`, `기간: …`). Gemma 3 270M copied the record's lines, or wrote records of
   its own, as its "feedback", and every other check passed that too;
4. within `CONTENT_MIN_CHARS`..`CONTENT_MAX_CHARS` characters;
5. free of e-mail addresses, links and phone numbers: the backend shows the text as it is;
6. mostly Korean: at least `CONTENT_MIN_KOREAN_RATIO` of its letters are Hangul (a challenge
   title in another language may be quoted; an answer in another language is not).

The first check a draft fails is its reason. A draft that ends mid-sentence without having been
cut (finish_reason `stop`) is the model's own ending and is kept.
"""

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher

from llm_common.telemetry.names import ContentCheck

from feedback_worker.prompt import RECORD_LINE, Prompt

# Zero-width and invisible format characters: a draft of only these looks empty to a member.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
# Reasoning models wrap their thinking in <think> tags; an unclosed one runs to the end.
_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LINK = re.compile(
    r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|kr|io|co|me|ly|app|dev|ai)\b",
    re.IGNORECASE,
)
# Numbers with a leading 0 (010-1234-5678, 02 123 4567, (031) 123-4567), international ones
# (+82 10 1234 5678) and Korean service numbers (1588-1234). Dates (2025-06-16) and counts
# (3/5) are none of these.
_PHONE = re.compile(
    r"(?<!\d)(?:\+\d{1,3}[ .-]?)?\(?0\d{1,2}\)?[ .-]?\d{3,4}[ .-]?\d{4}(?!\d)"
    r"|(?<!\d)\+\d{1,3}[ .-]?\d{1,4}[ .-]?\d{3,4}[ .-]?\d{4}(?!\d)"
    r"|(?<!\d)1[5-9]\d{2}-\d{4}(?!\d)"
)
# Where a sentence ends: terminal punctuation that no letter or digit follows (so not 5~6 or
# 2.5), or a final 다/요/죠 before a space or the end; then what closes it (quotes, brackets,
# more punctuation, emoji).
_TERMINAL = ".!?\u2026~\u3002\uff01\uff1f"  # the ellipsis and the full-width ones too
_CLOSING = "\"'\u201d\u2019)\\]"  # straight and curly closing quotes, brackets
_OPENING = "\"'\u201c\u2018(\\["  # and the opening ones
_SENTENCE_END = re.compile(
    f"(?:[{_TERMINAL}]+|[다요죠](?=[\\s{_CLOSING}]|$))(?!\\w)[{_CLOSING}]*(?:\\s*[^\\w\\s{_OPENING}])*"
)


ECHO_RUN_CHARS = 24
"""A feedback shares short phrases with its instructions ("개인 챌린지와 그룹 챌린지 ", 15
characters, is both a fair sentence start and part of the default template); a run this long is
the prompt copied, as in every echoed draft seen (the shortest, one instruction line, 29)."""


@dataclass(frozen=True)
class ContentRules:
    min_chars: int = 40
    max_chars: int = 1200
    min_korean_ratio: float = 0.5

    def reason(self, failed: ContentCheck) -> str:
        """Why a draft that failed `failed` is unfit, in words for the record and the DLQ."""
        return {
            ContentCheck.EMPTY: "empty once invisible characters and <think> text are removed",
            ContentCheck.ECHO: "repeats the prompt's own instructions instead of following them",
            ContentCheck.RECORD_ECHO: "hands the member's record back instead of feedback on it",
            ContentCheck.INCOMPLETE: "cut by max_tokens before its first sentence ended",
            ContentCheck.TOO_SHORT: f"shorter than {self.min_chars} characters",
            ContentCheck.TOO_LONG: f"longer than {self.max_chars} characters",
            ContentCheck.EMAIL: "contains an e-mail address",
            ContentCheck.LINK: "contains a link",
            ContentCheck.PHONE: "contains a phone number",
            ContentCheck.NOT_KOREAN: f"less than {self.min_korean_ratio:.0%} of its letters are "
            "Korean",
        }.get(failed, str(failed))


@dataclass(frozen=True)
class Review:
    """One draft judged: the text to deliver, or the check it failed."""

    text: str
    failed: ContentCheck | None = None
    trimmed: bool = False


def review(draft: str, finish_reason: str | None, rules: ContentRules, prompt: Prompt) -> Review:
    """Judge `draft`, written for `prompt`: neither its instructions nor its record's frame may
    come back in it."""
    text = _THINKING.sub(" ", _INVISIBLE.sub("", draft)).strip()
    if not text:
        return Review(text, ContentCheck.EMPTY)
    trimmed = False
    if finish_reason == "length":
        whole, text = text, last_complete_sentence(text)
        if not text:
            return Review(text, ContentCheck.INCOMPLETE)
        trimmed = text != whole
    checks = (
        (ContentCheck.ECHO, echoed_run(text, prompt.instructions) >= ECHO_RUN_CHARS),
        (ContentCheck.RECORD_ECHO, _hands_record_back(text, prompt)),
        (ContentCheck.TOO_SHORT, len(text) < rules.min_chars),
        (ContentCheck.TOO_LONG, len(text) > rules.max_chars),
        (ContentCheck.EMAIL, _EMAIL.search(text) is not None),
        (ContentCheck.LINK, _LINK.search(text) is not None),
        (ContentCheck.PHONE, _PHONE.search(text) is not None),
        (ContentCheck.NOT_KOREAN, korean_ratio(text) < rules.min_korean_ratio),
    )
    failed = next((check for check, fails in checks if fails), None)
    return Review(text, failed, trimmed)


def _hands_record_back(text: str, prompt: Prompt) -> bool:
    """A run of the member's record, or a line in the form the prompt lists records in."""
    return echoed_run(text, prompt.record) >= ECHO_RUN_CHARS or bool(RECORD_LINE.search(text))


def echoed_run(text: str, instructions: str) -> int:
    """The longest run of characters `text` shares with `instructions`, spaces collapsed."""
    draft, prompt = " ".join(text.split()), " ".join(instructions.split())
    matcher = SequenceMatcher(None, draft, prompt, autojunk=False)
    return matcher.find_longest_match().size


def last_complete_sentence(text: str) -> str:
    """`text` up to the end of its last complete sentence and what closes it; "" if none."""
    end = max((match.end() for match in _SENTENCE_END.finditer(text)), default=0)
    return text[:end].strip()


def korean_ratio(text: str) -> float:
    """The share of Hangul among the letters of `text` (1.0 when it has no letters)."""
    letters = [char for char in text if unicodedata.category(char).startswith("L")]
    if not letters:
        return 1.0
    return sum(1 for char in letters if _is_hangul(char)) / len(letters)


def _is_hangul(char: str) -> bool:
    return (
        "\uac00" <= char <= "\ud7a3" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"
    )
