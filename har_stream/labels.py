"""Label sets: the ordered class names a model's logits index into, plus readable display names.

Order is the contract: line N of a label file is logit N. The built-in sets live in ``weights/labels/``
(Kinetics-400 in torchvision's order, UCF101 in the official ``classInd.txt`` order); any other set is a
text file with one label per line, which is also how CLIP gets an open vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, LabelsError

DEFAULT_PROMPT = "a photo of someone {label}"


def check_prompt(prompt: str) -> str:
    """A CLIP prompt template must name ``{label}`` and nothing else in braces; checked where options arrive."""
    try:
        probe = prompt.format(label="\0")
    except (KeyError, IndexError, ValueError):
        probe = ""
    if "\0" not in probe:
        raise ConfigError(f"CLIP prompt {prompt!r} must contain {{label}} and no other braces, "
                          f"e.g. {DEFAULT_PROMPT!r}")
    return prompt

BUILTIN_SETS = ("ucf101", "kinetics400")

# A boundary inside CamelCase: lower/digit→Upper ("EyeMakeup"), or the last capital of an acronym
# before a capitalised word ("HTMLParser" → "HTML Parser").
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def labels_dir() -> Path:
    """The repository's ``weights/labels`` folder (label files are data, not code)."""
    return Path(__file__).resolve().parents[1] / "weights" / "labels"


def humanize(label: str) -> str:
    """A label as a person (or a CLIP prompt) would say it.

    UCF101-style CamelCase becomes lower-case words (``ApplyEyeMakeup`` → ``apply eye makeup``,
    ``YoYo`` → ``yo yo``) and snake_case becomes words; labels that already contain spaces
    (Kinetics: ``passing American football (in game)``) are kept exactly as written.
    """
    text = label.strip()
    if not text or any(ch.isspace() for ch in text):
        return text
    if "_" in text:
        return " ".join(part for part in text.split("_") if part)
    if not any(ch.isupper() for ch in text):
        return text
    return " ".join(_CAMEL_BOUNDARY.sub(" ", text).split()).lower()


@dataclass(frozen=True)
class LabelSet:
    """An ordered, duplicate-free tuple of class names; index i names logit i."""

    name: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise LabelsError(f"label set {self.name!r} is empty; give at least one label")
        seen: set[str] = set()
        for label in self.labels:
            if label in seen:
                raise LabelsError(f"label set {self.name!r} repeats {label!r}; each label must appear once")
            seen.add(label)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def display(self) -> tuple[str, ...]:
        """Readable names, index-aligned with ``labels`` (for UIs and CLIP prompts)."""
        return tuple(humanize(label) for label in self.labels)

    def index(self, label: str) -> int:
        """Position of ``label``; raises ``LabelsError`` (not ValueError) for a label not in the set."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise LabelsError(f"label {label!r} is not in label set {self.name!r}") from None


def read_label_file(path: Path, name: str | None = None) -> LabelSet:
    """Parse one label per line; blank lines and ``#`` comment lines are skipped, duplicates refused."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelsError(
            f"label file {path} does not exist; pass ucf101, kinetics400 or a path to a text file "
            f"with one label per line"
        ) from None
    except IsADirectoryError:
        raise LabelsError(f"label file {path} is a directory; pass a text file with one label per line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LabelsError(f"label file {path} could not be read ({err}); pass a UTF-8 text file") from None
    labels: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        label = raw.strip()
        if not label or label.startswith("#"):
            continue
        if label in first_line:
            raise LabelsError(
                f"label file {path} repeats {label!r} (lines {first_line[label]} and {lineno}); "
                f"each label must appear once"
            )
        first_line[label] = lineno
        labels.append(label)
    if not labels:
        raise LabelsError(f"label file {path} holds no labels; write one label per line (# starts a comment)")
    return LabelSet(name or path.stem, tuple(labels))


def load_label_set(spec: str) -> LabelSet:
    """``ucf101``, ``kinetics400`` or a path to a label file → ``LabelSet``."""
    key = spec.strip()
    if not key:
        raise LabelsError("no label set given; pass ucf101, kinetics400 or a path to a text file of labels")
    if key.lower() in BUILTIN_SETS:
        return read_label_file(labels_dir() / f"{key.lower()}.txt", name=key.lower())
    path = Path(key).expanduser()
    looks_like_path = path.suffix != "" or "/" in key or "\\" in key or key.startswith(".")
    if path.exists() or looks_like_path:
        return read_label_file(path)
    raise LabelsError(
        f"unknown label set {spec!r}; use one of {', '.join(BUILTIN_SETS)} or a path to a text file "
        f"with one label per line"
    )
