"""Blob key layout, in one place."""

from __future__ import annotations


def package_key(sha256: str) -> str:
    """Key of a package's original upload."""
    return f"packages/{sha256[:2]}/{sha256}"


def log_key(job_id: int) -> str:
    """Key of a job's log file."""
    return f"logs/{job_id // 1000}/{job_id}.log"


def log_job(key: str) -> int | None:
    """The job a log key belongs to (None for any other key)."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "logs" and parts[2].endswith(".log"):
        stem = parts[2].removesuffix(".log")
        return int(stem) if stem.isdigit() else None
    return None


def output_key(job_id: int, name: str) -> str:
    """Key of one output file of a job."""
    return f"outputs/{job_id}/{name}"


def payload_key(job_id: int, name: str) -> str:
    """Key of one payload file of a job."""
    return f"payloads/{job_id}/{name}"


def payload_job(key: str) -> int | None:
    """The job a payload key belongs to (None for any other key)."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "payloads" and parts[1].isdigit():
        return int(parts[1])
    return None


def job_prefixes(job_id: int) -> list[str]:
    """Every prefix holding blobs of one job (for purges)."""
    return [f"outputs/{job_id}/", f"payloads/{job_id}/"]
