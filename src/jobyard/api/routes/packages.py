"""``/api/v1/packages``: upload and inspect program bundles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Response, UploadFile

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, MAX_ID, PackageOut, PackagePage
from jobyard.api.openapi import errors
from jobyard.service import packages
from jobyard.service.uploads import receive_upload

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
    responses={
        200: {"model": PackageOut, "description": "These bytes were already stored: that package."},
        **errors(400, 403, 413),
    },
)
async def upload_package(
    ctx: Ctx,
    caller: Caller,
    response: Response,
    file: Annotated[UploadFile, File(description="zip, tar(.gz|.bz2|.xz) or a single file")],
) -> PackageOut:
    """Upload a package: 201 with a new package, or 200 with the existing one when the
    same bytes (sha256) were pushed before (same id; nothing new is stored).

    A job's SESSION_ID cannot upload (403).
    """
    async with receive_upload(ctx, file) as (tmp, _size):
        package, created = await packages.upload(
            ctx, tmp, file.filename or "package", principal=caller
        )
    if not created:
        response.status_code = 200
    return PackageOut.of(package)


@router.get("", response_model=PackagePage)
async def list_packages(
    ctx: Ctx,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    sha256: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="Only the package with these bytes (none or one item).",
        ),
    ] = None,
) -> PackagePage:
    """List packages newest first, or find the one with a sha256 (has it been pushed?)."""
    page = await packages.list_(ctx, cursor=cursor, limit=limit, sha256=sha256)
    return PackagePage(items=[PackageOut.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.get("/{package_id}", response_model=PackageOut, responses=errors(404))
async def get_package(package_id: Annotated[int, Path(ge=1, le=MAX_ID)], ctx: Ctx) -> PackageOut:
    """Read one package."""
    return PackageOut.of(await packages.get(ctx, package_id))
