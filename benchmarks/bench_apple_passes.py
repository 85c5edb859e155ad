"""Signed Apple Wallet passes per second on one core.

Compares, in one run and with the same development certificate, key and WWDR stand-in:

* ours          -- ``build_pkpass`` with a warm image cache (icon, logo and strip at @1x/@2x/@3x,
                   four ``.lproj`` folders), images fetched from the renderer on every pass;
* ours+content  -- the same, but also constructing and validating a fresh ``StoreCardContent``
                   per pass, as the service does;
* wallet-py3k   -- ``wallet.models.Pass.create`` on the same content and files (it runs
                   ``openssl smime`` once per pass);
* bare PKCS#7   -- one detached PKCS#7 signature with the same key over a manifest-sized payload,
                   the floor any in-process signer pays.

Usage: ``python benchmarks/bench_apple_passes.py [--seconds 2] [--rounds 3]``. Each case runs
for ``--seconds`` per round; the best round counts, which damps noise from other processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from app.wording import pass_wording
from passes import apple
from passes.devcerts import write_dev_certs

AUTH_TOKEN = secrets.token_urlsafe(24)


def realistic_content(signer: apple.PassSigner,
                      serial: str = "member-000042") -> apple.StoreCardContent:
    """A card with everything a real program would fill in."""
    design = apple.PassDesign(
        program_name="Kopi Kenangan Rewards",
        background_color="#7A1F2B",
        foreground_color="#FFFFFF",
        label_color="#F5D0C5",
    )
    # Translated in id/th/ms through the service's catalogs, as the service builds passes.
    activity = [
        apple.ActivityLine(dt.date(2025, 5, 30 - i), "Earned", 10 * (i % 4) - 5,
                     detail=f"Purchase at outlet #{i + 1}")
        for i in range(8)
    ]
    return apple.StoreCardContent(
        pass_type_identifier=signer.pass_type_identifier,
        team_identifier=signer.team_identifier,
        serial_number=serial,
        organization_name="Kopi Kenangan",
        description="Kopi Kenangan Rewards membership card",
        design=design,
        balance=1250,
        barcode=apple.Barcode(f"PP1:{serial}:7f3a9c", alt_text=serial),
        member_name="Siti Nurhaliza",
        tier="Gold",
        terms={
            "en": "Points expire 12 months after they are earned. Not exchangeable for cash.",
            "id": "Poin kedaluwarsa 12 bulan setelah diperoleh. Tidak dapat ditukar dengan uang.",
            "th": "แต้มหมดอายุ 12 เดือนหลังจากได้รับ ไม่สามารถแลกเป็นเงินสดได้",
            "ms": "Mata tamat tempoh 12 bulan selepas diperoleh. Tidak boleh ditukar kepada wang.",
        },
        how_to_redeem={
            "en": "Show the QR code at the counter before paying.",
            "id": "Tunjukkan kode QR di kasir sebelum membayar.",
            "th": "แสดงคิวอาร์โค้ดที่เคาน์เตอร์ก่อนชำระเงิน",
            "ms": "Tunjukkan kod QR di kaunter sebelum membayar.",
        },
        activity=activity,
        support_contact="support@kopi.example.com",
        marketer_message={"en": "Double points this weekend!", "id": "Poin ganda akhir pekan ini!"},
        web_service_url="https://pointpass.example.com/apple",
        authentication_token=AUTH_TOKEN,
        expiration_date=dt.datetime(
            2030, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=7))
        ),
        locations=[
            apple.Location(-6.2 + i / 100, 106.8 + i / 100, "Kopi Kenangan nearby")
            for i in range(5)
        ],
        wording=pass_wording(),
    )


PROGRESS = apple.RewardProgress(1250, 2000, "Free coffee")


def measure(
    cases: dict[str, Callable[[], object]], seconds: float, rounds: int
) -> dict[str, float]:
    """Best rate (calls per second) of each case over ``rounds`` runs of about ``seconds``.

    Rounds interleave the cases so that a slow spell on the machine hits all of them.
    """
    for fn in cases.values():
        fn()  # warm-up: imports, caches, lazy initialisation
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for name, fn in cases.items():
            count = 0
            start = time.perf_counter()
            deadline = start + seconds
            while True:
                fn()
                count += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            best[name] = max(best[name], count / (now - start))
    return best


def wallet_py3k_case(
    content: apple.StoreCardContent, files: dict[str, bytes], paths: dict[str, Path]
) -> Callable[[], object] | None:
    """Build the same pass with wallet-py3k, or None when it or openssl is unavailable."""
    try:
        from wallet.models import Barcode as WBarcode
        from wallet.models import BarcodeFormat, Pass, StoreCard
    except ImportError:
        return None
    if shutil.which("openssl") is None:
        return None
    document = content.pass_dict()

    def build() -> object:
        card = StoreCard()
        for group in ("headerFields", "primaryFields", "secondaryFields", "auxiliaryFields"):
            for f in document["storeCard"].get(group, ()):
                getattr(card, group).append(_wallet_field(f))
        for f in document["storeCard"]["backFields"]:
            card.backFields.append(_wallet_field(f))
        wallet_pass = Pass(
            card,
            passTypeIdentifier=content.pass_type_identifier,
            organizationName=content.organization_name,
            teamIdentifier=content.team_identifier,
        )
        wallet_pass.serialNumber = content.serial_number
        wallet_pass.description = content.description
        wallet_pass.backgroundColor = document["backgroundColor"]
        wallet_pass.foregroundColor = document["foregroundColor"]
        wallet_pass.labelColor = document["labelColor"]
        wallet_pass.logoText = document["logoText"]
        wallet_pass.barcode = WBarcode(
            content.barcode.message, BarcodeFormat.QR, content.barcode.alt_text or ""
        )
        wallet_pass.webServiceURL = content.web_service_url
        wallet_pass.authenticationToken = content.authentication_token
        wallet_pass.locations = document.get("locations")
        for name, data in files.items():
            wallet_pass.addFile(name, io.BytesIO(data))
        return wallet_pass.create(
            str(paths["pass_cert"]), str(paths["pass_key"]), str(paths["wwdr"]), ""
        ).getvalue()

    return build


def _wallet_field(f: dict[str, object]) -> object:
    from wallet.models import Field

    field = Field(f["key"], f["value"], f.get("label", ""))
    if "changeMessage" in f:
        field.changeMessage = f["changeMessage"]
    return field


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case; best counts")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dev_certs(Path(tmp))
        signer = apple.PassSigner.from_files(paths["pass_cert"], paths["pass_key"], paths["wwdr"])
        renderer = apple.ImageRenderer()
        content = realistic_content(signer)
        images = renderer.render(content.design, PROGRESS)  # warm the cache
        sample = apple.build_pkpass(content, images, signer)
        with zipfile.ZipFile(io.BytesIO(sample)) as archive:
            manifest = archive.read("manifest.json")
            files = {
                name: archive.read(name)
                for name in archive.namelist()
                if name not in ("pass.json", "manifest.json", "signature")
            }
        image_count = sum(name.endswith(".png") for name in files)
        lproj_count = sum(name.endswith("pass.strings") for name in files)

        cert = x509.load_pem_x509_certificate(paths["pass_cert"].read_bytes())
        key = serialization.load_pem_private_key(paths["pass_key"].read_bytes(), None)
        wwdr = x509.load_pem_x509_certificate(paths["wwdr"].read_bytes())
        options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]

        def bare() -> bytes:
            return (
                pkcs7.PKCS7SignatureBuilder()
                .set_data(manifest)
                .add_signer(cert, key, hashes.SHA256())  # type: ignore[arg-type]
                .add_certificate(wwdr)
                .sign(serialization.Encoding.DER, options)
            )

        def ours() -> bytes:
            return apple.build_pkpass(content, renderer.render(content.design, PROGRESS), signer)

        serials = iter(range(10**9))

        def ours_with_content() -> bytes:
            fresh = realistic_content(signer, serial=f"member-{next(serials):06d}")
            return apple.build_pkpass(fresh, renderer.render(fresh.design, PROGRESS), signer)

        cases: list[tuple[str, Callable[[], object] | None]] = [
            ("bare PKCS#7 signature", bare),
            ("ours (warm image cache)", ours),
            ("ours + content construction", ours_with_content),
            ("wallet-py3k Pass.create", wallet_py3k_case(content, files, paths)),
        ]
        runnable = {name: fn for name, fn in cases if fn is not None}
        measured = measure(runnable, args.seconds, args.rounds)
        rates: dict[str, float | None] = {name: measured.get(name) for name, _ in cases}

    bare_rate = rates["bare PKCS#7 signature"] or 0.0
    ours_rate = rates["ours (warm image cache)"] or 0.0
    wallet_rate = rates["wallet-py3k Pass.create"]
    print(
        f"Pass: {len(sample):,} bytes, {image_count} images, {lproj_count} .lproj, "
        f"manifest {len(manifest)} bytes; {args.rounds} x {args.seconds:g} s per case, best round"
    )
    print(f"{'case':<32}{'passes/s':>12}{'ms/pass':>10}{'vs bare':>10}")
    for name, rate in rates.items():
        if rate is None:
            print(f"{name:<32}{'n/a (wallet-py3k or openssl missing)':>32}")
            continue
        print(f"{name:<32}{rate:>12,.0f}{1000 / rate:>10.3f}{rate / bare_rate:>10.2f}")
    print()
    print(f"ours / bare PKCS#7  = {ours_rate / bare_rate:.2f}  (target >= 0.70)")
    if wallet_rate:
        print(f"ours / wallet-py3k  = {ours_rate / wallet_rate:.1f}x")
    print(json.dumps({k: round(v, 1) if v else None for k, v in rates.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
