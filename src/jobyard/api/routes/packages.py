"""``/api/v1/packages``: upload and inspect program bundles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, MAX_ID, PackageOut, PackagePage
from jobyard.api.openapi import errors
from jobyard.api.uploads import receive_upload
from jobyard.service import packages

router = APIRouter(
    prefix="/api/v1/packages",
    tags=["packages"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 422),
)


@router.post(
    "",
    status_code=201,
    response_model=PackageOut,
    responses=errors(400, 403, 413),
)
async def upload_package(
    ctx: Ctx,
    caller: Caller,
    file: Annotated[UploadFile, File(description="zip, tar(.gz|.bz2|.xz) or a single file")],
) -> PackageOut:
    """Upload a package; the same content uploaded twice is stored once (same id).

    A job's SESSION_ID cannot upload (403).
    """
    async with receive_upload(ctx, file) as (tmp, _size):
        package, _created = await packages.upload(
            ctx, tmp, file.filename or "package", principal=caller
        )
    return PackageOut.of(package)


@router.get("", response_model=PackagePage)
async def list_packages(
    ctx: Ctx,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PackagePage:
    """List packages newest first."""
    page = await packages.list_(ctx, cursor=cursor, limit=limit)
    return PackagePage(items=[PackageOut.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.get("/{package_id}", response_model=PackageOut, responses=errors(404))
async def get_package(package_id: Annotated[int, Path(ge=1, le=MAX_ID)], ctx: Ctx) -> PackageOut:
    """Read one package."""
    return PackageOut.of(await packages.get(ctx, package_id))
