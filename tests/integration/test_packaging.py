"""The wheel ships `sql/` inside the package (`sisu/_sql`), and an unpacked wheel finds its SQL
without the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    try:
        import hatchling  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "hatchling>=1.21"], check=True
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("sisu-*.whl")
    return built


def test_the_wheel_contains_the_sql_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sisu/_sql/queries.sql" in names
    assert "sisu/_sql/migrations/0001_app_schema.sql" in names
    shipped = {n for n in names if n.startswith("sisu/_sql/migrations/")}
    in_checkout = {
        f"sisu/_sql/migrations/{p.name}" for p in (ROOT / "sql/migrations").glob("*.sql")
    }
    assert shipped == in_checkout


def test_the_wheel_does_not_ship_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("tests/")]


def test_an_unpacked_wheel_reads_its_own_sql(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, sisu\n"
        "from sisu.db import migrations, queries, resources\n"
        "print(json.dumps({'pkg': sisu.__file__, 'sql': str(resources.sql_dir()),\n"
        "  'migrations': [m.version for m in migrations.available()],\n"
        "  'queries': sorted(queries.all_queries())}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert Path(seen["pkg"]).is_relative_to(site)
    assert Path(seen["sql"]).is_relative_to(site)
    assert "0001" in seen["migrations"]
    assert "insert_mark" in seen["queries"]
