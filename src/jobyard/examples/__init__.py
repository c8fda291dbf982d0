"""The example loaded by ``make run`` (``jobyard up --example``)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from jobyard.core.errors import NotFound
from jobyard.core.models import JobConfigSpec
from jobyard.core.schedules import ScheduleSpec
from jobyard.service import jobconfigs, packages, schedules
from jobyard.service.context import Context

EXAMPLE_DIR = Path(__file__).parent / "hello"
EXAMPLE_NAME = "hello"


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    return buf.getvalue()


async def load_example(ctx: Context) -> None:
    """Upload the example package and create jobconfig 'hello' (with a paused schedule)."""
    try:
        await ctx.store.jobconfig_get_by_name(EXAMPLE_NAME)
        return
    except NotFound:
        pass
    tmp_root = ctx.settings.home / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_root, suffix=".zip", delete=False) as fh:
        fh.write(_zip_folder(EXAMPLE_DIR))
        tmp = Path(fh.name)
    try:
        package, _ = await packages.upload(ctx, tmp, "hello.zip")
    finally:
        tmp.unlink(missing_ok=True)
    jc = await jobconfigs.create(
        ctx,
        JobConfigSpec(
            name=EXAMPLE_NAME,
            package_id=package.id,
            entrypoint="main",
            macros={"TARGET": "jobyard"},
            description="Example: greets, logs to stdout and stderr, writes greeting.txt",
        ),
        owner="admin",
    )
    # A schedule to look at (and resume): weekdays at 07:00 Paris time, paused.
    await schedules.create(
        ctx,
        jc.id,
        ScheduleSpec(
            cron="0 0 7 ? * MON-FRI",
            timezone="Europe/Paris",
            paused=True,
            name="weekday-mornings",
            description="Example: resume it with `jobyard schedules resume hello weekday-mornings`",
        ),
    )
