"""A reindex job as its admin page shows it, field by field, in words: the same text for the page's first
render and for every live update (the coordinator publishes it with the job's progress; the page writes each
value into the field of its name). Keys are `live_<model field>`: a ModelAdmin method may not take a model
field's name (the field would win), and the page's fields are found by these keys (`.field-<key>`)."""

from __future__ import annotations

from cirweb.catalog.models import ReindexJob
from cirweb.display import EMPTY, duration, moment, rounded

JOB_FIELDS: dict[str, str] = {  # key -> label, in the page's order
    "live_status": "Status",
    "live_done": "Done",
    "live_total": "Total",
    "live_skipped": "Skipped",
    "live_images_per_second": "Speed",
    "live_eta_seconds": "ETA",
    "live_added": "Added",
    "live_changed": "Changed",
    "live_deleted": "Deleted",
    "live_version": "Version",
    "live_created": "Created",
    "live_started": "Started",
    "live_finished": "Finished",
    "live_worker": "Worker",
    "live_attempts": "Attempts",
    "live_heartbeat": "Last sign of life",
    "live_sent_at": "Sent to the workers",
    "live_cancel_requested": "Cancel requested",
    "live_error": "Error",
}


def reindex_job_fields(job: ReindexJob) -> dict[str, str]:
    """Every field of JOB_FIELDS as text. `job.version` is read: select it with the job."""
    running = job.status not in ReindexJob.FINISHED
    eta = f"about {duration(job.eta_seconds)}" if running and job.eta_seconds is not None else EMPTY
    fields = {
        "live_status": ReindexJob.Status(job.status).label,
        "live_done": str(job.done),
        "live_total": str(job.total),
        "live_skipped": str(job.skipped),
        "live_images_per_second": rounded(job.images_per_second, 1, "images/s") if job.images_per_second else EMPTY,
        "live_eta_seconds": eta,
        "live_added": str(job.added),
        "live_changed": str(job.changed),
        "live_deleted": str(job.deleted),
        "live_version": f"v{job.version.number}" if job.version else EMPTY,
        "live_created": moment(job.created),  # never changes; here so that every time reads alike
        "live_started": moment(job.started),
        "live_finished": moment(job.finished),
        "live_worker": job.worker or EMPTY,
        "live_attempts": str(job.attempts),
        "live_heartbeat": moment(job.heartbeat),
        "live_sent_at": moment(job.sent_at),
        "live_cancel_requested": "yes" if job.cancel_requested else "no",
        "live_error": job.error or EMPTY,
    }
    assert fields.keys() == JOB_FIELDS.keys()
    return fields
