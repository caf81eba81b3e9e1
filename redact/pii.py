"""Spoken personal data in a transcript's word stream: phone numbers, SSNs, dates of birth, emails, street
addresses, licence plates, driver's licence numbers and person names.

The input is the ASR word list (Whisper words, with their leading spaces and punctuation); the output is a list
of `Span`s over word indices, so every hit maps straight back to word timestamps. Speech is messy, so numbers
are handled in every form an ASR model writes them: digits ("617-555-0123"), number words ("six one seven
five five five oh one two three", "double five", "twelve thirty four", "nineteen eighty-five"), letters and
NATO words for plates and licences ("A B C one two three", "alpha bravo").

Libraries, all offline and from PyPI:
- `text2num` (alpha2digit) turns runs of number words into digits ("twenty three" -> 23, "nineteen hundred").
- `usaddress` (a CRF street-address parser) labels the words after a house number; a span only counts as an
  address when it reaches a USPS street suffix (`usaddress.STREET_NAMES`) through a short, proper-noun street name.
- `names` ships the US Census 1990 first-name (5,494) and surname (88,799) lists, used with the capitalisation
  Whisper writes (proper nouns upper-case), context cues ("my name is", "Mr.", "Officer") and propagation (a name
  redacted once is redacted everywhere in the file).
Everything is deterministic and runs in microseconds per word; recall is preferred over precision (a wrongly
bleeped word costs less in a public release than a leaked phone number).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

CATEGORIES = ("PHONE", "SSN", "DOB", "EMAIL", "ADDRESS", "PLATE", "DL", "NAME")
ALL_CATEGORIES = tuple(c.lower() for c in CATEGORIES)
# When detectors overlap, the earlier category wins the word (an SSN is not also a phone number).
PRIORITY = {c: i for i, c in enumerate(("EMAIL", "SSN", "DOB", "PHONE", "DL", "PLATE", "ADDRESS", "NAME"))}


@dataclass(frozen=True)
class Span:
    """Words [start, end) of the input list are `category` (one of CATEGORIES)."""

    start: int
    end: int
    category: str


def parse_categories(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'phone,ssn' / ['phone', 'SSN'] / 'all' / 'none' -> ('phone', 'ssn'); ValueError names a bad one."""
    if value is None:
        return ALL_CATEGORIES
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip().lower() for i in items if i.strip()]
    if items == ["all"]:
        return ALL_CATEGORIES
    if items in ([], ["none"]):
        return ()
    bad = [i for i in items if i not in ALL_CATEGORIES]
    if bad:
        raise ValueError(f"unknown PII categor{'y' if len(bad) == 1 else 'ies'} {', '.join(bad)} "
                         f"(choose from {', '.join(ALL_CATEGORIES)}, all, none)")
    return tuple(c for c in ALL_CATEGORIES if c in items)


# ---------------------------------------------------------------------------------------------- word tables
UNITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
         "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TEENS = {"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"}
TENS = {"twenty", "thirty", "forty", "fourty", "fifty", "sixty", "seventy", "eighty", "ninety"}
SCALES = {"hundred", "thousand"}
ORDINALS = {"first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7",
            "eighth": "8", "ninth": "9", "tenth": "10", "eleventh": "11", "twelfth": "12", "thirteenth": "13",
            "fourteenth": "14", "fifteenth": "15", "sixteenth": "16", "seventeenth": "17", "eighteenth": "18",
            "nineteenth": "19", "twentieth": "20", "thirtieth": "30"}
REPEATS = {"double": 2, "triple": 3}
NUMBER_WORDS = set(UNITS) | TEENS | TENS | SCALES | set(ORDINALS) | set(REPEATS)
NATO = {"alpha", "alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
        "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
        "uniform", "victor", "whiskey", "whisky", "x-ray", "xray", "yankee", "zulu"}
CONNECTORS = {"dash", "hyphen", "-", "–", "slash"}
MONTHS = {m: i + 1 for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                          "september", "october", "november", "december"))}
MONTHS.update({"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
               "oct": 10, "nov": 11, "dec": 12})

# Context cues, looked up in the few words around a run of digits/letters; the nearest strong one decides.
CUES = {
    "phone": "PHONE", "phones": "PHONE", "cell": "PHONE", "cellphone": "PHONE", "telephone": "PHONE",
    "mobile": "PHONE", "fax": "PHONE", "call": "PHONE", "text": "PHONE", "reach": "PHONE", "extension": "PHONE",
    "social": "SSN", "ssn": "SSN", "security": "SSN",
    "license": "DL", "licence": "DL", "driver's": "DL", "drivers": "DL", "driver": "DL", "dl": "DL", "id": "DL",
    "permit": "DL",
    "plate": "PLATE", "plates": "PLATE", "tag": "PLATE", "tags": "PLATE", "registration": "PLATE",
    "born": "DOB", "birth": "DOB", "dob": "DOB", "d.o.b": "DOB", "birthday": "DOB", "birthdate": "DOB",
    # numbers that are not personal data in a police recording: leave them alone unless a strong cue is nearer
    "badge": "-", "case": "-", "unit": "-", "incident": "-", "report": "-", "docket": "-", "code": "-",
    "beat": "-", "district": "-", "precinct": "-", "exhibit": "-", "item": "-", "page": "-", "channel": "-",
    "room": "-", "reference": "-", "o'clock": "-", "percent": "-", "dollars": "-", "bucks": "-", "cents": "-",
    "miles": "-", "mph": "-", "years": "-", "minutes": "-", "hours": "-", "seconds": "-", "times": "-",
}
WEAK_CUES = {"number", "numbers", "#", "no", "num"}  # "number" alone says "some number": phone unless told otherwise

NAME_TITLES = {"mr", "mrs", "ms", "miss", "mister", "missus", "dr", "officer", "sergeant", "sgt", "detective",
               "deputy", "trooper", "lieutenant", "lt", "captain", "capt", "agent", "corporal", "cpl", "inspector",
               "professor", "judge", "señor", "senor", "señora", "senora"}
NAME_CUE_WORDS = {"named", "called", "name's", "names", "surname", "spelled", "spell", "spelling"}
NAME_STOP = {
    # capitalised words that are in the census lists but, in a transcript, are almost never a person
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "christmas", "easter", "god", "lord", "jesus", "christ", "christian", "officer", "sergeant", "detective",
    "deputy", "chief", "captain", "major", "general", "judge", "doctor", "mister", "miss", "sir", "madam",
    "ma'am", "mom", "dad", "mama", "papa", "police", "street", "avenue", "road", "main", "english", "spanish",
    "american", "mexican", "black", "white", "brown", "green", "gray", "grey", "ford", "lincoln", "dodge",
    "chevy", "chevrolet", "cadillac", "buick", "chrysler", "jeep", "honda", "toyota", "nissan", "tesla",
    "virginia", "georgia", "carolina", "washington", "jersey", "york", "texas", "florida", "california",
    "america", "okay", "ok", "yes", "yeah", "no", "hey", "hi", "hello", "thank", "thanks", "please", "sorry",
    "the", "and", "but", "i", "i'm", "i'll", "i've", "i'd", "a", "an", "it", "he", "she", "we", "they", "you",
    "my", "your", "his", "her", "our", "their", "this", "that", "what", "who", "where", "when", "why", "how",
    "is", "was", "are", "be", "so", "oh", "um", "uh", "mm", "hmm", "well", "now", "then", "there", "here",
    "do", "don't", "did", "can", "will", "would", "could", "should", "just", "all", "not", "if", "or", "on",
    "in", "at", "to", "of", "for", "with", "from", "by", "up", "out", "over", "go", "get", "come", "let",
    "stop", "wait", "look", "step", "put", "keep", "hold", "turn", "sit", "stand", "drop", "show", "tell",
    "north", "south", "east", "west", "mike", "copy", "roger", "dispatch", "unit", "ten", "car", "county",
    "state", "city", "park", "lake", "river", "bay", "hill", "mount", "saint", "st", "fort", "port", "new",
}
# first names that are also everyday words: only a name when something else says so
NAME_AMBIGUOUS = {"will", "may", "mark", "bill", "hope", "grace", "joy", "faith", "rich", "guy", "frank", "sue",
                  "pat", "art", "don", "jack", "chase", "chance", "dawn", "rose", "page", "lane", "wade", "rusty",
                  "ray", "sunny", "june", "april", "august", "summer", "autumn", "gay", "king", "young", "long",
                  "justice", "major", "miles", "price", "bond", "cash", "case", "gray", "love", "star", "sky",
                  "bob", "sandy", "norm", "max", "earl", "penny", "ginger", "holly", "ivy", "iris", "lily",
                  "daisy", "crystal", "amber", "ruby", "pearl", "angel", "honey", "baby", "buddy", "man"}

EMAIL_STOP = {"is", "it's", "its", "email", "e-mail", "mail", "address", "my", "me", "at", "to", "the", "was",
              "his", "her", "their", "use", "send", "it", "that", "and", "or", "email's", "try", "be", "on", "from"}
TLDS = {"com", "net", "org", "edu", "gov", "us", "io", "co", "uk", "info", "biz", "me", "mil", "ca", "de", "ai"}
ADDRESS_TAGS = {"AddressNumber", "AddressNumberPrefix", "AddressNumberSuffix", "StreetNamePreDirectional",
                "StreetNamePreModifier", "StreetNamePreType", "StreetName", "StreetNamePostType",
                "StreetNamePostDirectional", "StreetNamePostModifier", "OccupancyType", "OccupancyIdentifier",
                "SubaddressType", "SubaddressIdentifier", "PlaceName", "StateName", "ZipCode"}

_STRIP = " \t\"“”‘’.,!?;:()[]{}…"
_SENTENCE_END = re.compile(r"[.?!…]['\"”’)]*$")
_DIGITISH = re.compile(r"^[+(]?\d[\d\-().\s/]*\)?$")
_AMOUNT = re.compile(r"^[$€£]|%$|^\d{1,3}(,\d{3})+(\.\d+)?$|^\d+\.\d{1,2}$|:\d")
_SSN_FORMAT = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})$")
_ORDINAL_DIGITS = re.compile(r"^(\d{1,3})(st|nd|rd|th)$")
_SPELLED = re.compile(r"^([A-Za-z]-){2,}[A-Za-z]$")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.([a-z]{2,6})$")


@dataclass
class _Tok:
    raw: str  # as the ASR wrote it, e.g. " Gonzalez,"
    clean: str  # punctuation stripped at both ends: "Gonzalez"
    lower: str
    kind: str  # num | digits | alnum | letter | conn | amount | word
    ends_sentence: bool
    capitalised: bool


def _kind(clean: str, lower: str) -> str:
    if not clean:
        return "word"
    if lower in NUMBER_WORDS or (("-" in lower) and all(p in NUMBER_WORDS for p in lower.split("-") if p)):
        return "num"
    if _AMOUNT.search(clean):
        return "amount"
    if _ORDINAL_DIGITS.match(lower):
        return "ordinal"
    if _DIGITISH.match(clean) or _NUMERIC_DATE.match(clean):
        return "digits"
    if lower in CONNECTORS:
        return "conn"
    if (len(clean) == 1 and clean.isalpha() and clean.isupper()) or lower in NATO:
        return "letter"
    if 2 <= len(clean) <= 4 and clean.isalpha() and clean.isupper() and lower not in CUES and lower != "ok":
        return "caps"  # "ABC" of "ABC 1234"; a code only next to digits or after a plate/licence cue
    stripped = re.sub(r"[-\s]", "", clean)
    if stripped.isalnum() and any(c.isdigit() for c in stripped) and any(c.isalpha() for c in stripped):
        return "alnum"
    return "word"


def _token(raw: str) -> _Tok:
    clean = raw.strip().strip(_STRIP)
    if clean.startswith("-") and clean[1:2].isdigit():  # Whisper's " 617", "-555", "-0123"
        clean = clean[1:]
    lower = clean.lower()
    if lower.endswith("'s") and len(lower) > 3 and lower not in {"name's", "it's", "that's", "what's", "he's", "she's"}:
        base = clean[:-2]
    else:
        base = clean
    first = base[:1]
    return _Tok(raw=raw, clean=clean, lower=lower, kind=_kind(clean, lower),
                ends_sentence=bool(_SENTENCE_END.search(raw.strip())), capitalised=first.isalpha() and first.isupper())


@dataclass
class _Unit:
    """One word, or a run of number words collapsed into the digits they say (`pieces` as text2num split them)."""

    start: int
    end: int
    kind: str
    pieces: list[str]

    @property
    def digits(self) -> str:
        return "".join(re.sub(r"\D", "", p) for p in self.pieces)


def _number_pieces(words: list[str]) -> list[str]:
    """['six', 'one', 'double', 'five'] -> ['6', '1', '5', '5']; ['nineteen', 'eighty-five'] -> ['19', '85']."""
    from text_to_num import alpha2digit

    expanded: list[str] = []
    repeat = 1
    for w in words:
        for part in (p for p in w.split("-") if p):
            if part in REPEATS:
                repeat = REPEATS[part]
                continue
            part = "zero" if part in {"oh", "o"} else part
            expanded.extend([part] * repeat)
            repeat = 1
    pieces = []
    for piece in alpha2digit(" ".join(expanded), "en").split():
        if re.match(r"^\d", piece):
            pieces.append(piece)
        elif piece in UNITS:
            pieces.append(UNITS[piece])
        elif piece in ORDINALS:
            pieces.append(ORDINALS[piece] + "th")
    return pieces


def _units(toks: list[_Tok]) -> list[_Unit]:
    units: list[_Unit] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "num":
            j = i
            words = []
            while j < len(toks) and (toks[j].kind == "num" or (toks[j].lower == "and" and words and words[-1] in SCALES
                                                                and j + 1 < len(toks) and toks[j + 1].kind == "num")):
                words.append(toks[j].lower)
                j += 1
                if toks[j - 1].ends_sentence:
                    break
            # "oh" / "o" alone, or leading an utterance with a comma, is an interjection, not a zero
            if words and words[0] in {"oh", "o"} and (len(words) == 1 or toks[i].raw.strip().endswith(",")):
                units.append(_Unit(i, i + 1, "word", [toks[i].clean]))
                i += 1
                continue
            pieces = _number_pieces(words)
            units.append(_Unit(i, j, "num" if pieces else "word", pieces or [toks[i].clean]))
            i = j
        else:
            units.append(_Unit(i, i + 1, t.kind, [t.clean]))
            i += 1
    return units


# ---------------------------------------------------------------------------------------------- detectors
def _cue(toks: list[_Tok], start: int, end: int, back: int = 7, ahead: int = 4) -> str | None:
    """Nearest strong cue before the run (then after it); 'number' if only a weak one; '-' for non-PII numbers."""
    weak = False
    for k in range(start - 1, max(-1, start - 1 - back), -1):
        w = toks[k].lower
        if w in CUES:
            return CUES[w]
        weak = weak or w in WEAK_CUES
        if toks[k].ends_sentence and k < start - 1:
            break
    for k in range(end, min(len(toks), end + ahead)):
        w = toks[k].lower
        if w in CUES and CUES[w] != "-":
            return CUES[w]
        if toks[k].ends_sentence:
            break
    return "number" if weak else None


def _codes(toks: list[_Tok], units: list[_Unit]) -> list[Span]:
    """Runs of digits / number words / letters: phone numbers, SSNs, licence plates, driver's licence numbers."""
    spans = []
    runnable = {"num", "digits", "alnum", "letter", "caps", "conn"}
    i = 0
    while i < len(units):
        if units[i].kind not in runnable or units[i].kind == "conn":
            i += 1
            continue
        j = i
        while j < len(units) and units[j].kind in runnable:  # not stopped by full stops: "617. 555. 0123."
            j += 1
        run = units[i:j]
        while run and run[-1].kind == "conn":
            run.pop()
        # single capitals "A"/"I" at the edges of a run are usually words, not spelled letters ("A B C" are)
        while len(run) > 1 and toks[run[0].start].clean in {"A", "I"} and run[1].kind not in {"letter", "caps"}:
            run.pop(0)
        while len(run) > 1 and toks[run[-1].start].clean in {"A", "I"} and run[-2].kind not in {"letter", "caps"}:
            run.pop()
        if all(u.kind == "caps" for u in run):  # acronyms alone ("FBI", "DUI") are words
            i = max(j, i + 1)
            continue
        if run:
            category = _classify_code(toks, run)
            if category:
                spans.append(Span(run[0].start, run[-1].end, category))
        i = max(j, i + 1)
    return spans


def _classify_code(toks: list[_Tok], run: list[_Unit]) -> str | None:
    digits = sum(len(u.digits) if u.kind in {"num", "digits"} else 0 for u in run)
    letters = 0
    for u in run:
        if u.kind == "letter":
            letters += 1
        elif u.kind == "caps":
            letters += len(u.pieces[0])
        elif u.kind == "alnum":
            letters += sum(c.isalpha() for c in u.pieces[0])
            digits += sum(c.isdigit() for c in u.pieces[0])
    length = digits + letters
    start, end = run[0].start, run[-1].end
    cue = _cue(toks, start, end)
    if length == 0:
        return None
    if letters and not digits:  # spelled-out letters: a name being spelled, or a plate / licence without digits
        if cue == "PLATE" and 2 <= letters <= 8:
            return "PLATE"
        if cue == "DL" and letters >= 4:
            return "DL"
        return "NAME" if letters >= 3 and _near(toks, start, NAME_CUE_WORDS | {"name", "last", "first"}, 8) else None
    raw = "".join(toks[k].clean for k in range(start, end))
    if cue == "-":
        return None
    if cue == "SSN" and digits >= 4 and not letters:
        return "SSN"
    if cue == "PLATE" and 2 <= length <= 8:
        return "PLATE"
    if cue == "DL" and length >= 4:
        return "DL"
    if cue == "DOB":
        return "DOB" if not letters and 2 <= digits <= 8 else None
    if not letters:
        if _SSN_FORMAT.match(raw):
            return "SSN"
        if cue == "PHONE" and digits >= 5:  # ASR often drops a digit of a number it was told is a phone number
            return "PHONE"
        if cue == "PHONE" and digits >= 3 and _near(toks, start, {"extension", "ext"}, 2):
            return "PHONE"
        if digits == 9 and cue != "number":
            return "SSN"
        if 7 <= digits <= 15:
            return "PHONE"
        return None
    if letters >= 1 and digits >= 1:
        if 5 <= length <= 8 and (cue == "number" or letters >= 2 or len(run) > 1):
            return "PLATE"
        if length >= 9 and digits >= 4:
            return "DL"
    return None


def _near(toks: list[_Tok], index: int, words: set[str], back: int) -> bool:
    return any(toks[k].lower in words for k in range(max(0, index - back), index))


def _parse_year(pieces: list[str]) -> int | None:
    joined = "".join(re.sub(r"\D", "", p) for p in pieces)
    if len(joined) == 4 and 1900 <= int(joined) <= 2100:
        return int(joined)
    if len(joined) == 2:
        y = int(joined)
        return 2000 + y if 2000 + y <= date.today().year else 1900 + y
    return None


def _dates(toks: list[_Tok], units: list[_Unit]) -> list[Span]:
    """Calendar dates with a day; a date of birth when a cue says so, or when it is a full date 10+ years back."""
    spans = []
    this_year = date.today().year
    for ui, u in enumerate(units):
        found = None  # (start, end, has_year, year)
        if u.kind == "digits" and (m := _NUMERIC_DATE.match(toks[u.start].clean)):
            a, b = int(m.group(1)), int(m.group(2))
            if (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31):
                found = (u.start, u.end, True, _parse_year([m.group(3)]))
        elif u.kind == "word" and toks[u.start].lower in MONTHS and (toks[u.start].capitalised or u.start == 0):
            # Month [the] day[,] [year]   e.g. "March 14th, 1985", "March fourteenth nineteen eighty-five"
            k = ui + 1
            if k < len(units) and toks[units[k].start].lower == "the":
                k += 1
            day = units[k] if k < len(units) else None
            day_value = _day(day, toks) if day is not None else None
            if day_value is not None and not toks[u.start].ends_sentence:
                end, has_year, year = day.end, False, None
                year_units = _year_units(units, k, day)
                if year_units:
                    year = _parse_year([p for yu in year_units for p in yu.pieces])
                    if year is not None:
                        end, has_year = year_units[-1].end, True
                found = (u.start, end, has_year, year)
        elif u.kind in {"num", "digits"} and _day(u, toks) is not None and ui + 2 < len(units) \
                and toks[units[ui + 1].start].lower == "of" and toks[units[ui + 2].start].lower in MONTHS:
            # "the fourteenth of March [1985]"
            month = units[ui + 2]
            end, has_year, year = month.end, False, None
            year_units = _year_units(units, ui + 2, month)
            if year_units and (year := _parse_year([p for yu in year_units for p in yu.pieces])) is not None:
                end, has_year = year_units[-1].end, True
            found = (u.start, end, has_year, year)
        if not found:
            continue
        start, end, has_year, year = found
        cue = _near(toks, start, {k for k, v in CUES.items() if v == "DOB"}, 10)
        if cue or (has_year and year is not None and year <= this_year - 10):
            spans.append(Span(start, end, "DOB"))
    # "born on three fourteen eighty-five", "date of birth oh three one four eight five": a number run right after
    for k, t in enumerate(toks):
        if CUES.get(t.lower) == "DOB":
            for u in units:
                if k < u.start <= k + 4 and u.kind in {"num", "digits"} and len(u.digits) >= 2:
                    j = next((i for i, v in enumerate(units) if v is u), None)
                    end = u.end
                    while j is not None and j + 1 < len(units) and units[j + 1].kind in {"num", "digits", "conn"}:
                        j += 1
                        end = units[j].end
                    spans.append(Span(u.start, end, "DOB"))
                    break
    return spans


def _day(u: _Unit, toks: list[_Tok]) -> int | None:
    if u.kind == "num" and u.pieces:
        m = re.match(r"^(\d{1,2})(st|nd|rd|th)?$", u.pieces[0])
        value = int(m.group(1)) if m else None
    elif u.kind == "digits" and (m := re.match(r"^(\d{1,2})$", toks[u.start].clean)):
        value = int(m.group(1))
    elif u.kind == "ordinal" and (m := _ORDINAL_DIGITS.match(toks[u.start].lower)):
        value = int(m.group(1))
    else:
        value = None
    return value if value is not None and 1 <= value <= 31 else None


def _year_units(units: list[_Unit], k: int, day: _Unit) -> list[_Unit]:
    """The units that carry a year right after `day` (units[k]): '1985', 'nineteen eighty-five', "'85"."""
    if day.kind == "num" and len(day.pieces) > 1:  # "fourteenth nineteen eighty five" collapsed into one run
        return [_Unit(day.start, day.end, "num", day.pieces[1:])]
    out = []
    for v in units[k + 1:k + 3]:
        if v.kind in {"num", "digits"}:
            out.append(v)
        elif v.kind == "word" and re.match(r"^'\d\d$", v.pieces[0]):
            out.append(_Unit(v.start, v.end, "digits", [v.pieces[0][1:]]))
        else:
            break
    return out


def _emails(toks: list[_Tok]) -> list[Span]:
    spans = []
    for i, t in enumerate(toks):
        if "@" in t.clean and _EMAIL.search(t.clean.replace(" ", "")):
            spans.append(Span(i, i + 1, "EMAIL"))
            continue
        if t.lower != "at" or i == 0:
            continue
        # spoken: "john dot smith at gmail dot com", "jsmith at yahoo.com"
        end = None
        if i + 1 < len(toks) and _DOMAIN.match(toks[i + 1].lower) and toks[i + 1].lower.rsplit(".", 1)[1] in TLDS:
            end = i + 2
        else:
            k = i + 1
            while k + 2 < len(toks) + 1 and k < i + 7:
                if toks[k].lower in {"dot", "period", "."} and k + 1 < len(toks) and toks[k + 1].lower in TLDS \
                        and k > i + 1:
                    end = k + 2
                    break
                k += 1
        if end is None:
            continue
        start = i
        k = i - 1
        while k >= 0 and i - k <= 5 and toks[k].lower not in EMAIL_STOP and toks[k].kind != "amount" \
                and not toks[k].ends_sentence:
            start = k
            k -= 1
        if start < i:
            spans.append(Span(start, end, "EMAIL"))
    return spans


def _addresses(toks: list[_Tok], units: list[_Unit]) -> list[Span]:
    import usaddress

    spans = []
    for ui, u in enumerate(units):
        if u.kind not in {"num", "digits"} or not (1 <= len(u.digits) <= 6):
            continue
        if u.kind == "digits" and not toks[u.start].clean.isdigit():
            continue
        window = []
        for v in units[ui + 1:ui + 12]:
            window.append(v)
            if toks[v.end - 1].ends_sentence:
                break
        words = [u.digits] + [re.sub(r"[^\w'#-]", "", v.digits if v.kind == "num" else toks[v.start].clean)
                              for v in window]
        if not any(w.lower() in usaddress.STREET_NAMES for w in words[2:]) or any(not w for w in words):
            continue
        try:
            tagged = usaddress.parse(" ".join(words))
        except Exception:  # noqa: BLE001 - a parser failure means "not an address", never a crash
            continue
        if len(tagged) != len(words) or tagged[0][1] != "AddressNumber":
            continue
        labels = [label for _, label in tagged]
        last = _address_end(words, labels, window, toks)
        if last is not None:
            spans.append(Span(u.start, window[last - 2].end if last >= 2 else u.end, "ADDRESS"))
    return spans


def _address_end(words: list[str], labels: list[str], window: list[_Unit], toks: list[_Tok]) -> int | None:
    """Index (in `words`) just past the address, or None when the words are not a street address."""
    import usaddress

    k = 1
    while k < len(labels) and labels[k] in {"AddressNumberSuffix", "StreetNamePreDirectional", "StreetNamePreModifier",
                                            "StreetNamePreType"}:
        k += 1
    name_start = k
    while k < len(labels) and labels[k] == "StreetName":
        k += 1
    names_ = range(name_start, k)
    if not (1 <= len(names_) <= 3) or k >= len(labels) or labels[k] != "StreetNamePostType":
        return None
    if words[k].lower() not in usaddress.STREET_NAMES:
        return None
    for n in names_:  # street names are proper nouns or ordinals ("Elm", "57th"), not "dogs ran down the"
        v = window[n - 1]
        if not (toks[v.start].capitalised or v.kind in {"num", "digits"} or re.match(r"^\d+(st|nd|rd|th)$", words[n])):
            return None
    k += 1
    if k < len(labels) and labels[k] == "StreetNamePostDirectional":
        k += 1
    if k + 1 < len(labels) and labels[k] in {"OccupancyType", "SubaddressType"} \
            and labels[k + 1] in {"OccupancyIdentifier", "SubaddressIdentifier"}:
        k += 2
    while k < len(labels) and labels[k] == "PlaceName" and toks[window[k - 1].start].capitalised and \
            toks[window[k - 1].start].lower not in NAME_STOP - {"new", "york", "saint", "st", "fort", "port"}:
        k += 1
    if k < len(labels) and labels[k] == "StateName":
        k += 1
    if k < len(labels) and labels[k] == "ZipCode" and re.match(r"^\d{5}$", words[k]):
        k += 1
    return k


@functools.cache
def _name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), lower-case, from the US Census 1990 lists shipped by the `names` package."""
    import names

    folder = os.path.dirname(names.__file__)

    def read(file: str) -> set[str]:
        with open(os.path.join(folder, file)) as f:
            return {line.split()[0].lower() for line in f if line.strip()}

    first = read("dist.male.first") | read("dist.female.first")
    return frozenset(first), frozenset(read("dist.all.last"))


def _name_word(t: _Tok) -> str:
    return t.lower[:-2] if t.lower.endswith("'s") else t.lower


def _names(toks: list[_Tok]) -> list[Span]:
    first, last = _name_lists()
    n = len(toks)
    is_name = [False] * n

    def sentence_start(i: int) -> bool:
        return i == 0 or toks[i - 1].ends_sentence

    def plausible(i: int) -> bool:
        """Looks like part of a name: a capitalised word that is not a common capitalised non-name."""
        t = toks[i]
        w = _name_word(t)
        return (t.kind == "word" and t.capitalised and len(w) >= 2 and w.replace("-", "").replace("'", "").isalpha()
                and w not in NAME_STOP)

    def extend(i: int, limit: int = 2) -> None:
        """Mark the capitalised words right after a name (surname, middle name) as the same name."""
        k = i + 1
        while k < n and k <= i + limit and not toks[k - 1].ends_sentence and not toks[k - 1].raw.rstrip().endswith(",")\
                and plausible(k) and _name_word(toks[k]) not in NAME_AMBIGUOUS - last:
            is_name[k] = True
            k += 1

    for i, t in enumerate(toks):
        w = _name_word(t)
        prev = toks[i - 1].lower.rstrip(".") if i else ""
        # 1. cues: "my name is X Y", "named X", "Mr. X", "Officer X"
        cue = prev in NAME_TITLES or prev in {"named", "called", "name's"} or (
            prev in {"is", "was"} and i >= 2 and toks[i - 2].lower in {"name", "surname"})
        if cue and t.kind == "word" and w not in NAME_STOP and len(w) >= 2 and (
                t.capitalised or w in first or w in last):
            is_name[i] = True
            extend(i, 2)
            continue
        if _SPELLED.match(t.clean) and (_near(toks, i, NAME_CUE_WORDS | {"name"}, 8) or (i and is_name[i - 1])):
            is_name[i] = True
            continue
        if not plausible(i):
            continue
        # 2. a capitalised census first name, not at the start of a sentence (Whisper capitalises those anyway)
        follows_name = i + 1 < n and plausible(i + 1) and not t.raw.rstrip().endswith(",") and (
            _name_word(toks[i + 1]) in last or _name_word(toks[i + 1]) in first)
        if w in first:
            ambiguous = w in NAME_AMBIGUOUS
            if ambiguous and not follows_name:
                continue
            if sentence_start(i) and not follows_name and not (t.raw.rstrip().endswith(",") and not ambiguous):
                continue  # "Will..." / "Grant..." at a sentence start: only "John, ..." (vocative) or "John Smith"
            if prev in {"the", "a", "an"}:
                continue
            is_name[i] = True
            extend(i, 2)
        # 3. a surname right after a name word (handled by extend) or a title (handled by the cue rule)
    # 4. a name said once is redacted everywhere it is said again, capitalised, in the same recording
    said = {_name_word(toks[i]) for i in range(n) if is_name[i] and toks[i].kind == "word"
            and _name_word(toks[i]) not in NAME_STOP and len(_name_word(toks[i])) >= 3}
    for i, t in enumerate(toks):
        if not is_name[i] and t.capitalised and _name_word(t) in said:
            is_name[i] = True
    spans = []
    i = 0
    while i < n:
        if is_name[i]:
            j = i
            while j < n and is_name[j]:
                j += 1
            spans.append(Span(i, j, "NAME"))
            i = j
        else:
            i += 1
    return spans


def detect(words: Sequence[str], categories: Iterable[str] = ALL_CATEGORIES) -> list[Span]:
    """PII spans over `words` (ASR word strings, leading spaces and punctuation allowed), in order.

    Detectors overlap freely; each word goes to the highest-priority category that claims it, and only the
    `categories` asked for (lower- or upper-case names) are returned.
    """
    wanted = {c.upper() for c in categories}
    unknown = wanted - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown PII categories: {', '.join(sorted(unknown))}")
    if not wanted or not words:
        return []
    toks = [_token(w) for w in words]
    units = _units(toks)
    candidates = [*_emails(toks), *_dates(toks, units), *_codes(toks, units), *_addresses(toks, units), *_names(toks)]
    label: list[str | None] = [None] * len(toks)
    for span in sorted(candidates, key=lambda s: PRIORITY[s.category]):
        if span.category not in wanted:
            continue
        for k in range(span.start, span.end):
            if label[k] is None:
                label[k] = span.category
    spans = []
    i = 0
    while i < len(label):
        if label[i] is None:
            i += 1
            continue
        j = i
        while j < len(label) and label[j] == label[i]:
            j += 1
        spans.append(Span(i, j, label[i]))
        i = j
    return spans
