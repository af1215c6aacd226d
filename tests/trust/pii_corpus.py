"""A corpus built for the PII recognizers: sentences holding a known number of each kind in the formats
people write them, and decoys that look like them but are not (a card failing Luhn, an ID with a wrong
check digit, an IBAN failing mod-97, dates, prices, versions, order numbers, out-of-range octets)."""

from __future__ import annotations

import random

from danlu.data.pii import cn_id_ok, iban_ok, luhn_ok

FIRST = ["Ann", "Wei", "Li", "Omar", "Sara", "Jon", "Mei", "Raj"]
DOMAINS = ["example.com", "mail.cn", "corp.co.uk", "uni.edu", "qq.com", "163.com"]


def _digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def _luhn_complete(rng, prefix, length):
    body = prefix + _digits(rng, length - len(prefix) - 1)
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d


def card(rng):
    number = _luhn_complete(rng, rng.choice(["4", "51", "37", "6011", "62"]), rng.choice([16, 16, 15, 19]))
    style = rng.randrange(3)
    if style == 0 or len(number) not in (15, 16):
        return number
    if len(number) == 15:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    sep = rng.choice(" -")
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


def bad_card(rng):
    good = _luhn_complete(rng, "4", 16)
    return good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)


def cn_id(rng, valid=True):
    while True:
        born = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        body = rng.choice(["110105", "310101", "440305", "510107"]) + born + _digits(rng, 3)
        for check in "0123456789X":
            if cn_id_ok(body + check) == valid:
                return body + check


def iban(rng, valid=True):
    country, length = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)])
    if country == "GB":
        bban = rng.choice(["WEST", "NWBK", "BARC"]) + _digits(rng, length - 4)
    elif country == "NL":
        bban = rng.choice(["ABNA", "RABO"]) + _digits(rng, 10)
    else:
        bban = _digits(rng, length)
    checks = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    if not valid:
        checks = (checks % 97) + 1 if (checks % 97) + 1 != checks else checks + 1
    number = f"{country}{checks:02d}{bban}"
    assert iban_ok(number) == valid
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.5 else number


def phone(rng):
    kind = rng.randrange(5)
    if kind == 0:  # mainland mobile, plain or grouped, with or without +86
        mobile = "1" + rng.choice("3456789") + _digits(rng, 9)
        grouped = rng.choice([mobile, f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}", f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"])
        return grouped if rng.random() < 0.5 else f"+86 {grouped}"
    if kind == 1:  # mainland landline
        area = rng.choice(["010", "021", "0755", "0571"])
        return rng.choice([f"{area}-{_digits(rng, 8)}", f"({area}) {_digits(rng, 8)}"])
    if kind == 2:  # UK
        return f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}"
    if kind == 3:  # North America
        return f"+1 ({rng.randint(201, 989)}) {_digits(rng, 3)}-{_digits(rng, 4)}"
    return f"+49 {rng.randint(30, 89)} {_digits(rng, 7)}"  # Germany


def ip(rng):
    if rng.random() < 0.7:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    return ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8)) if rng.random() < 0.5 else \
        f"fe80::{rng.randint(1, 65535):x}:{rng.randint(1, 65535):x}"


def email(rng):
    user = rng.choice(FIRST).lower() + rng.choice(["", ".", "_", "+news."]) + _digits(rng, rng.randint(0, 3))
    return f"{user}{'x' if user.endswith(('.', '_')) else ''}@{rng.choice(DOMAINS)}"


def decoy(rng):
    return rng.choice([
        lambda: f"order {_digits(rng, 8)}", lambda: f"on {rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"costs {rng.randint(1, 999)}.{rng.randint(0, 99):02d}", lambda: f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        lambda: f"card {bad_card(rng)}", lambda: f"id {cn_id(rng, valid=False)}", lambda: f"iban {iban(rng, valid=False)}",
        lambda: f"host {rng.randint(256, 999)}.{rng.randint(0, 255)}.1.1", lambda: f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        lambda: f"room {rng.randint(100, 999)}", lambda: f"ref #{_digits(rng, 6)}",
    ])()


MAKERS = {"email": email, "phone": phone, "card": card, "ip": ip, "cn_id": cn_id, "iban": iban}
TEMPLATES = ["Please reach {name} via {value}, {decoy}.", "{decoy}; {name} gave {value} yesterday",
             "{value} belongs to {name} ({decoy})", "客户{name}的信息：{value}，{decoy}。"]


def corpus(per_kind: int = 200, seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """(texts, kind -> the values planted, in order); a text holds one value, some two, some none."""
    rng = random.Random(seed)
    texts, planted = [], {k: [] for k in MAKERS}
    jobs = [k for k in MAKERS for _ in range(per_kind)]
    rng.shuffle(jobs)
    for kind in jobs:
        value = MAKERS[kind](rng)
        planted[kind].append(value)
        text = rng.choice(TEMPLATES).format(name=rng.choice(FIRST), value=value, decoy=decoy(rng))
        texts.append(text)
        if rng.random() < 0.3:
            texts.append(f"nothing personal here: {decoy(rng)} and {decoy(rng)}")
    return texts, planted
