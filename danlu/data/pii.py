"""Personal data in text: pattern recognizers with their checksums, and what to do with a match.

Presidio was the first choice, but its analyzer finds names (and even runs) only through a spaCy model
that is downloaded at run time, which danlu's machines cannot do; its pattern recognizers alone add
nothing over these. So the kinds here are regular expressions each confirmed by the check the
identifier carries: Luhn for payment cards, ISO 7064 MOD 11-2 for mainland-China resident ID numbers
(with a real birth date), ISO 13616 mod-97 for IBANs, octet / hextet ranges for IP addresses, digit
counts for phone numbers. Personal names need a statistical recognizer and are not offered.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass

# A digit that is not part of a longer run of digits on either side.
_NB, _NA = r"(?<![\dA-Za-z])", r"(?![\dA-Za-z])"

PATTERNS: dict[str, re.Pattern] = {
    "email": re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"),
    "iban": re.compile(_NB + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _NA),
    "cn_id": re.compile(_NB + r"\d{17}[\dXx]" + _NA),
    # Unbroken, in fours (4-4-4-4, 4-4-4-4-3), or Amex's 4-6-5; never after a "+" (a phone's country code).
    "card": re.compile(r"(?<![\dA-Za-z+])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"
                       r"|\d{4}([ -])\d{6}\2\d{5})" + _NA),
    "ip": re.compile(r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39})"
                     r"(?![\w.:])"),
    # +CC then digit groups; a mainland-China mobile: 11 digits from 13-19 (3-4-4); a mainland landline: a
    # 3-4 digit area code from 0, then 7-8 digits.
    "phone": re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
                        r"|1[3-9]\d[ -]?\d{4}[ -]?\d{4}"
                        r"|\(?0\d{2,3}\)?[ -]?\d{7,8})" + _NA),
}
KINDS = tuple(PATTERNS)
# When two matches overlap, the earlier kind here wins (an IBAN's digits are not a phone number).
_PRIORITY = ("email", "iban", "cn_id", "card", "ip", "phone")
MASKS = {kind: f"[{kind.upper()}]" for kind in KINDS}
ACTIONS = ("warn", "mask", "drop")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"


def cn_id_ok(number: str) -> bool:
    """GB 11643-1999: the 18th character is ISO 7064 MOD 11-2 of the first 17; digits 7-14 a birth date."""
    number = number.upper()
    if _CN_CHECK[sum(int(c) * w for c, w in zip(number[:17], _CN_WEIGHTS)) % 11] != number[17]:
        return False
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def iban_ok(iban: str) -> bool:
    """ISO 13616: the country code and check digits moved to the end, letters as 10..35, mod 97 == 1."""
    iban = iban.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 8 <= len(digits) <= 15  # E.164 allows at most 15


_VALID = {
    "email": lambda s: True,
    "iban": iban_ok,
    "cn_id": cn_id_ok,
    "card": lambda s: luhn_ok(re.sub(r"\D", "", s)),
    "ip": _ip_ok,
    "phone": _phone_ok,
}


@dataclass(frozen=True)
class Match:
    kind: str
    start: int
    end: int


def unknown_kind(kind: str) -> str | None:
    """None for a kind this module finds; else what is wrong, for the recipe's message."""
    if kind in KINDS:
        return None
    why = (" (personal names need a statistical recognizer; Presidio's needs a spaCy model downloaded at run "
           "time, which danlu does not do)" if kind in ("name", "person") else "")
    return f"unknown PII kind '{kind}'{why}; kinds: {', '.join(KINDS)}"


# Kinds whose shape alone is telling: an IBAN- or ID-shaped string that fails its check is a mistyped
# IBAN or ID, or none, and never lends its digits to a card or a phone number (a tenth of them pass Luhn).
_SHAPED = ("iban", "cn_id")


def find(text: str, kinds=KINDS) -> list[Match]:
    """The PII in `text`, in order, without overlaps (the higher-priority kind wins an overlap)."""
    found: list[Match] = []
    taken: list[tuple[int, int]] = []
    for kind in _PRIORITY:
        if kind not in kinds and kind not in _SHAPED:
            continue
        for m in PATTERNS[kind].finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            if kind in kinds and _VALID[kind](m.group(0)):
                found.append(Match(kind, m.start(), m.end()))
                taken.append((m.start(), m.end()))
            elif kind in _SHAPED:
                taken.append((m.start(), m.end()))
    return sorted(found, key=lambda f: f.start)


def mask(text: str, matches: list[Match]) -> str:
    out, at = [], 0
    for m in matches:
        out += [text[at:m.start], MASKS[m.kind]]
        at = m.end
    return "".join(out) + text[at:]


def scrub(text: str, kinds=KINDS) -> str:
    return mask(text, find(text, kinds))
