"""The wheel carries everything the service reads from disk: `pip install .` (not editable)
and run from another directory, the pages, translations, static files, migrations and pass
fonts are all found."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter whose `app` and `passes` come from the installed wheel.
SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    site, work = Path(sys.argv[1]), Path(sys.argv[2])
    import app, passes
    assert Path(app.__file__).is_relative_to(site), app.__file__
    assert Path(passes.__file__).is_relative_to(site), passes.__file__

    from flask_migrate import upgrade
    from app import create_app
    from app.cli.demo import create_demo
    from app.extensions import db
    from app.wallet.apple.pass_files import pass_url

    service = create_app({"DATABASE_URL": f"sqlite:///{work / 'pointpass.db'}",
                          "ENV": "development", "INSTANCE_PATH": str(work / "instance"),
                          "BASE_URL": "http://pointpass.test"})
    with service.app_context():
        upgrade()  # the migrations shipped in the wheel
        demo = create_demo()
        slug, pkpass = demo.program.slug, pass_url(demo.card)
        db.session.remove()
        db.engine.dispose()
    client = service.test_client()

    page = client.get(f"/join/{slug}", headers={"Accept-Language": "th"})
    assert page.status_code == 200, page.status_code
    text = page.get_data(as_text=True)
    assert 'lang="th"' in text and "ชื่อ" in text, text[:300]  # "name", from the .mo file
    staff = client.get("/staff/login", headers={"Accept-Language": "id"})
    assert staff.status_code == 200, staff.status_code
    for path in ("/static/vendor/jsQR.js", "/static/staff/scanner.js"):
        assert client.get(path).status_code == 200, path
    download = client.get(pkpass.removeprefix("http://pointpass.test"))
    assert download.status_code == 200, download.status_code
    assert download.mimetype == "application/vnd.apple.pkpass"
    print("installed service works")
""")


def test_the_wheel_runs_the_service_from_elsewhere(tmp_path: Path) -> None:
    # Build from a clean copy: an in-tree build would reuse files left in build/ by earlier
    # builds, and a wheel missing a file could pass.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "instance", "node_modules",
        "test-artifacts", "__pycache__", ".pytest_cache", ".ruff_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(wheels), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("pointpass-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/templates/join.html" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(site), str(work)],
        cwd=work, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "installed service works" in result.stdout
