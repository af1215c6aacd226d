"""What the quality gate found, as JSON and Markdown, and the decision to stop or warn."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from danlu.errors import DataError
from danlu.run import atomic_write_json, atomic_write_text


# What the text length units count, as the report names them.
UNITS = {"chars": "characters", "words": "words (split on whitespace)"}


@dataclass
class Rule:
    name: str
    passed: bool
    observed: float | int | None  # the measured value the threshold is compared with
    threshold: float | int | None
    count: int  # rows (or classes) concerned
    examples: list[str] = field(default_factory=list)  # "split:row", at most 5
    message: str = ""
    # failing stops the run whatever quality.on_fail says: nothing could be trained past it
    fatal: bool = False

    def line(self) -> str:
        eg = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.name}: {self.message}{eg}"


@dataclass
class QualityReport:
    rules: list[Rule]
    counts: dict[str, dict[str, int]]  # split -> {"read": n, "kept": n, "sampled_from": n with data.limit}
    labels: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> label -> count
    text_lengths: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    dropped: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(rule.passed for rule in self.rules)

    @property
    def failures(self) -> list[Rule]:
        return [rule for rule in self.rules if not rule.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "counts": self.counts, "labels": self.labels,
                "text_lengths": self.text_lengths, "rules": [asdict(r) for r in self.rules],
                "dropped": self.dropped, "notes": self.notes}

    def to_markdown(self) -> str:
        out = ["# Data report", "", f"**Quality gate: {'passed' if self.passed else 'FAILED'}**", ""]
        out += ["## Rows per split", "", "| split | read | kept | dropped |", "|---|---:|---:|---:|"]
        out += [f"| {s} | {_read(c)} | {c['kept']:,} | {c['read'] - c['kept']:,} |" for s, c in self.counts.items()]
        if self.labels:
            splits = list(self.labels)
            classes = sorted({k for dist in self.labels.values() for k in dist}, key=natural_order)
            out += ["", "## Label distribution", "", "| label | " + " | ".join(splits) + " |",
                    "|---|" + "---:|" * len(splits)]
            for label in classes:
                cells = []
                for s in splits:
                    n, total = self.labels[s].get(label, 0), sum(self.labels[s].values()) or 1
                    cells.append(f"{n:,} ({n / total:.1%})")
                out.append(f"| {_cell(label)} | " + " | ".join(cells) + " |")
        if self.text_lengths:
            out += ["", "## Text length", "", "| split | unit | min | mean | p95 | max |",
                    "|---|---|---:|---:|---:|---:|"]
            for s, units in self.text_lengths.items():
                for unit, st in units.items():
                    out.append(f"| {s} | {UNITS.get(unit, unit)} | {st['min']:g} | {st['mean']:.1f} | {st['p95']:g} | "
                               f"{st['max']:g} |")
        out += ["", "## Rules", "", "| rule | result | observed | threshold | count | examples | message |",
                "|---|---|---:|---:|---:|---|---|"]
        for r in self.rules:
            out.append(f"| {r.name} | {'pass' if r.passed else '**FAIL**'} | {_num(r.observed)} | "
                       f"{_num(r.threshold)} | {r.count:,} | {', '.join(r.examples)} | {_cell(r.message)} |")
        if self.dropped:
            out += ["", "## Dropped rows", ""]
            for s, reasons in self.dropped.items():
                for reason, rows in reasons.items():
                    shown = ", ".join(map(str, rows[:20])) + (f", … ({len(rows)} in all)" if len(rows) > 20 else "")
                    out.append(f"- {s}, {reason}: rows {shown}")
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def enforce(report: QualityReport, on_fail: str = "stop") -> list[str]:
    """Raise DataError naming every failing rule (on_fail "stop", or a fatal rule failed), else return
    them as warnings."""
    lines = [rule.line() for rule in report.failures]
    fatal = [rule.name for rule in report.failures if rule.fatal]
    if lines and (on_fail == "stop" or fatal):
        raise DataError(
            f"data quality gate failed ({len(lines)} rule{'s' * (len(lines) != 1)}):\n"
            + "\n".join(f"  - {line}" for line in lines) + "\n" + _advice(on_fail, fatal))
    return lines


def _advice(on_fail: str, fatal: list[str]) -> str:
    waived = f"quality.on_fail: warn does not cover {', '.join(fatal)}: nothing could train past it"
    if on_fail != "stop":
        return f"{waived}; fix the data"
    advice = "fix the data, relax the thresholds under `quality:`, or set quality.on_fail: warn"
    return advice + (f" ({waived})" if fatal else "")


def save_report(report: QualityReport, run_dir: Path) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    json_path, md_path = run_dir / "data_report.json", run_dir / "data_report.md"
    atomic_write_json(json_path, report.to_dict())
    atomic_write_text(md_path, report.to_markdown())
    return json_path, md_path


def _num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def natural_order(label: str):
    """Sort key: "2" before "10" when labels are numbers, alphabetical otherwise."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _read(counts: dict[str, int]) -> str:
    drawn = counts.get("sampled_from")
    return f"{counts['read']:,}" + (f" (sampled from {drawn:,})" if drawn else "")
