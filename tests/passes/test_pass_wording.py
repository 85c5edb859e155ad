"""The wording on passes: fixed words and activity lines come from the Babel catalogs in every
language, and every word the pass code marks for translation is translated."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.pofile import read_po

import app.wallet.apple.pass_files  # noqa: F401 - marks the activity words and how-to-redeem
import passes.google.payloads  # noqa: F401 - marks the Google labels
from app.wording import TRANSLATIONS, pass_wording
from passes.apple import ActivityLine, StoreCardContent
from passes.languages import LANGUAGES
from passes.wording import MARKED, CatalogWording, english

TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
ACTIVITY = [
    ActivityLine(dt.date(2025, 5, 2), "Earned", 10, detail="Latte"),
    ActivityLine(dt.date(2025, 5, 1), "Redeemed", -50, detail="Free cookie"),
    ActivityLine(dt.date(2025, 4, 30), "Expired", -5),
]
ENGLISH_HISTORY = (
    "2025-05-02 · Earned: Latte · +10\n"
    "2025-05-01 · Redeemed: Free cookie · -50\n"
    "2025-04-30 · Expired · -5"
)


# The label of each field in en, id, th and ms.
LABELS = {
    "balance": ("Points", "Poin", "แต้ม", "Mata"),
    "balance_primary": ("Balance", "Saldo", "ยอดคงเหลือ", "Baki"),
    "member": ("Member", "Anggota", "สมาชิก", "Ahli"),
    "tier": ("Tier", "Tingkat", "ระดับ", "Peringkat"),
    "history": ("Recent activity", "Aktivitas terbaru", "กิจกรรมล่าสุด", "Aktiviti terkini"),
    "message": ("Message", "Pesan", "ข้อความ", "Mesej"),
    "redeem": ("How to redeem", "Cara menukarkan", "วิธีแลกรับรางวัล", "Cara menebus"),
    "support": ("Customer support", "Layanan pelanggan", "ฝ่ายบริการลูกค้า", "Khidmat pelanggan"),
    "terms": ("Terms and conditions", "Syarat dan ketentuan", "ข้อกำหนดและเงื่อนไข",
              "Terma dan syarat"),
}


def _strings(directory: Path, pk: SimpleNamespace) -> dict[str, dict[str, str]]:
    return {lang: pk.parse_strings((directory / f"{lang}.lproj" / "pass.strings").read_bytes())
            for lang in LANGUAGES}


def _fields(document: dict) -> dict[str, dict]:
    return {f["key"]: f for group in document["storeCard"].values() for f in group}


def test_a_built_pass_reads_in_every_language(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    dev_certs: dict[str, Path],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    content = make_content(activity=ACTIVITY, points_label=None, balance_placement="both")
    directory = pk.unzip(build(content), tmp_path / "pass")
    assert pk.openssl_verify(directory, dev_certs["wwdr"]).returncode == 0
    fields = _fields(pk.read_pass_json(directory))
    strings = _strings(directory, pk)

    # pass.json keeps English (or keys); the phone's language picks the text.
    assert fields["history"]["value"] == ENGLISH_HISTORY
    labels = {key: tuple(strings[lang][fields[key]["label"]] for lang in LANGUAGES)
              for key in LABELS}
    assert labels == LABELS

    # The activity lines: English in pass.json, translated words (program details as given).
    assert ENGLISH_HISTORY not in strings["en"]
    assert strings["id"][ENGLISH_HISTORY] == (
        "2025-05-02 · Diperoleh: Latte · +10\n"
        "2025-05-01 · Ditukarkan: Free cookie · -50\n"
        "2025-04-30 · Kedaluwarsa · -5"
    )
    assert strings["th"][ENGLISH_HISTORY] == (
        "2025-05-02 · ได้รับแต้ม: Latte · +10\n"
        "2025-05-01 · แลกแต้ม: Free cookie · -50\n"
        "2025-04-30 · แต้มหมดอายุ · -5"
    )
    assert strings["ms"][ENGLISH_HISTORY] == (
        "2025-05-02 · Diperoleh: Latte · +10\n"
        "2025-05-01 · Ditebus: Free cookie · -50\n"
        "2025-04-30 · Luput · -5"
    )

    # The lock-screen change message of the balance, with the program's word for points.
    change = fields["balance"]["changeMessage"]
    assert {lang: strings[lang][change] for lang in LANGUAGES} == {
        "en": "You now have %@ Points.",
        "id": "Anda sekarang memiliki %@ Poin.",
        "th": "ตอนนี้คุณมี %@ แต้ม",
        "ms": "Anda kini mempunyai %@ Mata.",
    }
    assert all(strings[lang][fields["message"]["changeMessage"]] == "%@" for lang in LANGUAGES)


def test_a_localized_description_is_keyed_by_its_english_text(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    description = {"en": "Kopi loyalty card", "th": "บัตรสะสมแต้ม Kopi"}
    directory = pk.unzip(build(make_content(description=description)), tmp_path / "pass")
    assert pk.read_pass_json(directory)["description"] == "Kopi loyalty card"
    strings = _strings(directory, pk)
    assert strings["th"]["Kopi loyalty card"] == "บัตรสะสมแต้ม Kopi"
    # Where it reads as in English (and in English itself) the text needs no line.
    assert "Kopi loyalty card" not in strings["id"]
    assert "Kopi loyalty card" not in strings["en"]


def test_no_activity_reads_in_every_language(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    directory = pk.unzip(build(make_content(activity=())), tmp_path / "pass")
    key = _fields(pk.read_pass_json(directory))["history"]["value"]
    texts = {lang: entries[key] for lang, entries in _strings(directory, pk).items()}
    assert texts == {"en": "No activity yet.", "id": "Belum ada aktivitas.",
                     "th": "ยังไม่มีกิจกรรม", "ms": "Belum ada aktiviti."}


def test_without_a_wording_every_language_reads_english(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    content = make_content(activity=ACTIVITY, points_label=None, wording=english)
    assert content.card_strings == ()
    directory = pk.unzip(build(content), tmp_path / "pass")
    strings = _strings(directory, pk)
    assert {strings[lang]["member_label"] for lang in LANGUAGES} == {"Member"}
    assert {strings[lang]["points_label"] for lang in LANGUAGES} == {"Points"}
    assert all(ENGLISH_HISTORY not in strings[lang] for lang in LANGUAGES)


def test_english_pass_is_the_same_with_or_without_the_catalogs(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    translated = pk.unzip(build(make_content(activity=ACTIVITY)), tmp_path / "translated")
    plain = pk.unzip(build(make_content(activity=ACTIVITY, wording=english)), tmp_path / "plain")
    for name in ("pass.json", "en.lproj/pass.strings"):
        assert (translated / name).read_bytes() == (plain / name).read_bytes(), name


def test_a_wording_that_misses_a_word_falls_back_to_english() -> None:
    class Partial:
        def gettext(self, message: str) -> str:
            return {"Earned": "Diperoleh"}.get(message, message)

    wording = CatalogWording({"id": Partial()})
    line = ActivityLine(dt.date(2025, 5, 2), "Earned", 10, detail="Latte")
    assert line.render(wording, "id") == "2025-05-02 · Diperoleh: Latte · +10"
    assert line.render(wording, "th") == line.line == "2025-05-02 · Earned: Latte · +10"
    assert ActivityLine(dt.date(2025, 5, 2), "Adjusted", 1).render(wording, "id") == (
        "2025-05-02 · Adjusted · +1")


def _catalog(lang: str) -> dict[str, tuple[str, bool]]:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: (m.string, m.fuzzy) for m in read_po(f) if m.id}


def test_pass_code_marks_its_wording() -> None:
    # The modules imported above mark these; a sample guards against the marking breaking.
    assert {"Balance", "Recent activity", "Earned", "Reversed", "Member ID", "Points",
            "You now have %@ {points}."} <= MARKED


def test_every_marked_msgid_is_extracted() -> None:
    with (TRANSLATIONS / "messages.pot").open("rb") as f:
        template = {m.id for m in read_po(f) if m.id}
    assert sorted(MARKED - template) == []


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_marked_msgid_is_translated(lang: str) -> None:
    catalog = _catalog(lang)
    missing = sorted(msgid for msgid in MARKED
                     if msgid not in catalog or not catalog[msgid][0].strip()
                     or catalog[msgid][1])
    assert missing == [], f"{lang}: no translation for {missing}"
    # ... and the compiled catalog the service loads has them too.
    wording = pass_wording()
    untranslated = sorted(msgid for msgid in MARKED if wording(lang, msgid) == msgid
                          and catalog[msgid][0] != msgid)
    assert untranslated == [], f"{lang}: recompile the .mo ({untranslated})"
