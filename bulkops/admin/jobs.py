"""The jobs in the admin: ``/admin/bulkops/bulkjob/`` and each job's page.

The changelist lists the jobs a user may see (their own; a superuser's, everyone's),
with filters and the actions cancel and retry failed chunks. A job's page (its change
view) follows it through its life: a live progress bar while it reads and validates,
then the preview of an admin upload (totals, errors by row and column, the failed rows
to fix in place or download, Confirm import), then the writing and the outcome.

Every change goes through ``bulkops.jobs.services`` (confirm, cancel, retry, revalidate)
by POST; the views only check who asks, call, and say what happened.
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import urlencode

from bulkops.errorfile import flatten_errors
from bulkops.exceptions import BulkOpsError
from bulkops.jobs import services
from bulkops.jobs.models import BulkChunk, BulkJob

from . import preview

#: A user's admin upload in one of these has not finished validating yet.
VALIDATING = (BulkJob.QUEUED, BulkJob.VALIDATING)
CHUNKS_PER_PAGE = 50


def job_url(job: Any) -> str:
    return reverse("admin:bulkops_bulkjob_change", args=[job.pk])


def active_upload(*, user: Any, model_label: str) -> BulkJob | None:
    """The user's admin upload of this model still waiting or validating, if any."""
    return (
        BulkJob.objects.filter(
            user=user,
            model=model_label,
            source=BulkJob.SOURCE_ADMIN,
            status__in=VALIDATING,
            confirmed_at__isnull=True,
        )
        .order_by("-created_at")
        .first()
    )


def model_of(job: BulkJob) -> Any:
    try:
        return apps.get_model(job.model)
    except (LookupError, ValueError):
        return None


def model_name(job: BulkJob, *, plural: bool = True) -> str:
    model = model_of(job)
    if model is None:
        return job.model
    opts = model._meta
    return str(opts.verbose_name_plural if plural else opts.verbose_name)


def outcome_sentence(job: BulkJob) -> str:
    """What a finished job did, in one sentence."""
    rows = model_name(job)
    written = []
    for count, verb in (
        (job.created, "created"),
        (job.updated, "updated"),
        (job.deleted, "deleted"),
    ):
        if count:
            written.append(f"{verb} {count:,}")
    failed = []
    if job.errors:
        failed.append(f"{job.errors:,} failed")
    if job.rolled_back:
        failed.append(f"{job.rolled_back:,} rolled back")
    if job.unprocessed:
        failed.append(f"{job.unprocessed:,} not attempted")
    did = ", ".join(written) or "nothing written"
    trouble = f"; {', '.join(failed)}" if failed else ""
    if job.dry_run:
        would = did.replace("created", "would create").replace("updated", "would update")
        would = would.replace("deleted", "would delete").replace("nothing written", "no change")
        return f"Validation only, nothing was written: {would} {rows}{trouble}."
    if job.status == BulkJob.COMPLETED:
        return f"Import finished: {did} {rows}."
    if job.status == BulkJob.PARTIAL:
        return f"Import finished with problems: {did} {rows}{trouble}."
    if job.status == BulkJob.CANCELLED:
        return f"Import cancelled: {did} {rows}{trouble}."
    reason = f" {job.error}" if job.error else ""
    return f"The import failed: {did} {rows}{trouble}.{reason}"


_STAGE_DONE_WORDS = {
    BulkJob.STAGE_QUEUED: "waiting for a worker",
    BulkJob.STAGE_READ: "read",
    BulkJob.STAGE_VALIDATE: "validated",
    BulkJob.STAGE_CHECK: "validated",
    BulkJob.STAGE_CONFIRM: "validated",
    BulkJob.STAGE_WRITE: "written",
    BulkJob.STAGE_DONE: "processed",
}


def progress_text(job: BulkJob, progress: dict[str, Any]) -> str:
    """ "12,000 of 100,000 rows validated, about 20 s left" — the bar's words."""
    if job.stage == BulkJob.STAGE_QUEUED and not job.is_finished:
        return "Waiting for a worker."
    processed = progress.get("processed") or 0
    total = progress.get("total")
    done = _STAGE_DONE_WORDS.get(job.stage, "processed")
    text = (
        f"{processed:,} of {total:,} rows {done}"
        if total is not None
        else f"{processed:,} rows {done}"
    )
    if job.stage == BulkJob.STAGE_CHECK and not job.is_finished:
        text += "; checking for duplicates across the file"
    eta = progress.get("eta_seconds")
    if eta and not job.is_finished:
        text += f", about {eta} s left" if eta < 90 else f", about {round(eta / 60)} min left"
    return text + "."


class ModelFilter(admin.SimpleListFilter):
    """The models of the jobs this user can see (never other users' models)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = (
            model_admin.get_queryset(request).order_by().values_list("model", flat=True).distinct()
        )
        found = []
        for label in sorted(set(labels)):
            model = apps.get_model(label) if "." in label else None
            found.append(
                (label, str(model._meta.verbose_name_plural).capitalize() if model else label)
            )
        return found

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


@admin.register(BulkJob)
class BulkJobAdmin(admin.ModelAdmin):
    """Jobs, read-only: they change through their page's buttons and the actions."""

    list_display = [
        "job",
        "status_badge",
        "model_label",
        "user",
        "source",
        "rows",
        "progress_bar",
        "created_on",
    ]
    list_display_links = ["job"]
    list_filter = ["status", ModelFilter, "source"]
    list_select_related = ["user"]
    search_fields = ["filename", "user__username"]
    actions = ["cancel_jobs", "retry_failed_chunks"]
    change_list_template = "admin/bulkops/bulkjob/change_list.html"
    job_template = "admin/bulkops/job.html"
    list_per_page = 50

    # -- who sees what -------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return services.visible_jobs(request.user).order_by("-created_at")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Every staff member sees their own jobs; get_queryset keeps the others out.
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # `manage.py bulk_jobs purge` deletes finished jobs

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    # -- the changelist ------------------------------------------------------------

    @admin.display(description="job", ordering="created_at")
    def job(self, job: BulkJob) -> str:
        return job.filename or f"{job.get_source_display()} items"

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: BulkJob) -> str:
        return format_html(
            '<span class="bulkops-status bulkops-status-{}">{}</span>',
            job.status,
            job.get_status_display(),
        )

    @admin.display(description="model", ordering="model")
    def model_label(self, job: BulkJob) -> str:
        return model_name(job).capitalize()

    @admin.display(description="rows", ordering="total_rows")
    def rows(self, job: BulkJob) -> str:
        return f"{job.total_rows:,}" if job.total_rows is not None else "–"

    @admin.display(description="created", ordering="created_at")
    def created_on(self, job: BulkJob) -> str:
        """A short local time ("Nov 22, 13:27"; the year when it is not this one), the full
        one on hover: the row fits beside the navigation and filters at 1280 px."""
        when = timezone.localtime(job.created_at)
        short = "M j, H:i" if when.year == timezone.localtime().year else "M j, Y"
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            when.isoformat(),
            date_format(when, "DATETIME_FORMAT"),
            date_format(when, short),
        )

    @admin.display(description="progress")
    def progress_bar(self, job: BulkJob) -> str:
        percent = job.progress.get("percent")
        label = job.get_stage_display()
        if percent is None:
            return format_html(
                '<progress aria-label="{}"></progress> <span class="bulkops-muted">{}</span>',
                label,
                label,
            )
        return format_html(
            '<progress max="100" value="{}" aria-label="{}"></progress> '
            '<span class="bulkops-muted">{}% · {}</span>',
            percent,
            label,
            f"{percent:g}",
            label,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = dict(extra_context or {})
        if request.user.has_module_perms("django_rq"):
            # django-rq's own admin entry (RQ_SHOW_ADMIN_LINK), when it is registered.
            with contextlib.suppress(NoReverseMatch):
                extra_context["rq_dashboard_url"] = reverse(
                    f"{self.admin_site.name}:django_rq_dashboard_changelist"
                )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, services.cancel_job, "cancelled")

    @admin.action(description="Retry the failed chunks of selected jobs", permissions=["retry"])
    def retry_failed_chunks(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, services.retry_failed_chunks, "sent to retry")

    def _act(self, request: HttpRequest, queryset: QuerySet, action: Any, done: str) -> None:
        succeeded = 0
        for job in queryset:
            try:
                action(job=job, user=request.user)
            except BulkOpsError as exc:
                self.message_user(request, f"{self.job(job)}: {exc.message}", messages.WARNING)
            else:
                succeeded += 1
        if succeeded:
            noun = "job" if succeeded == 1 else "jobs"
            self.message_user(request, f"{succeeded} {noun} {done}.", messages.SUCCESS)

    # -- a job's page and its actions ------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<uuid:job_id>/status.json", wrap(self.status_view), name="bulkops_bulkjob_status"
            ),
            path("<uuid:job_id>/confirm/", wrap(self.confirm_view), name="bulkops_bulkjob_confirm"),
            path("<uuid:job_id>/cancel/", wrap(self.cancel_view), name="bulkops_bulkjob_cancel"),
            path("<uuid:job_id>/retry/", wrap(self.retry_view), name="bulkops_bulkjob_retry"),
            path("<uuid:job_id>/edit/", wrap(self.edit_view), name="bulkops_bulkjob_edit"),
            path(
                "<uuid:job_id>/failed-rows.<str:fmt>",
                wrap(self.failed_rows_view),
                name="bulkops_bulkjob_failed_rows",
            ),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, job_id: Any) -> BulkJob:
        """The job, if this user may see it; another user's job is simply not there (404)."""
        try:
            job = self.get_queryset(request).filter(pk=job_id).first()
        except (ValueError, BulkOpsError):
            job = None
        if job is None:
            raise Http404("No such job.")
        return job

    def _import_admin(self, job: BulkJob) -> Any:
        model = model_of(job)
        return self.admin_site._registry.get(model) if model is not None else None

    def _owner_may(self, request: HttpRequest, job: BulkJob, what: str) -> str | None:
        """Why ``request.user`` may not ``what`` this job's preview, or None."""
        if job.user_id != request.user.pk:
            return f"Only {job.user or 'the user who uploaded it'} can {what} this import."
        import_admin = self._import_admin(job)
        modes = (
            import_admin.get_bulk_import_modes(request)
            if hasattr(import_admin, "get_bulk_import_modes")
            else {}
        )
        if job.mode not in modes:
            return f"You no longer have the permission to {job.mode} {model_name(job)}."
        return None

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return self.job_view(request, object_id)

    def job_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """The job page: progress, preview, outcome — whatever the job is at."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        job = self._job(request, job_id)
        progress = job.progress
        view = request.GET.get("view") if request.GET.get("view") in ("errors", "rows") else None
        waiting = job.status == BulkJob.VALIDATED and job.confirmed_at is None
        has_errors = job.invalid_rows > 0 or job.errors > 0 or job.row_errors.exists()
        view = view or ("rows" if waiting and has_errors else "errors")
        editable = waiting and self._owner_may(request, job, "change") is None
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "has_view_permission": True,
            "changelist_url": reverse("admin:bulkops_bulkjob_changelist"),
            "title": self._title(job),
            "job": job,
            "progress": progress,
            "progress_text": progress_text(job, progress),
            "status_url": reverse("admin:bulkops_bulkjob_status", args=[job.pk]),
            "active": not job.is_finished and not waiting,
            "waiting": waiting,
            "valid_rows": max(job.rows_validated - job.invalid_rows, 0),
            "view": view,
            "has_errors": has_errors,
            "editable": editable,
            "can_confirm": waiting and self._owner_may(request, job, "confirm") is None,
            "confirm_refusal": self._owner_may(request, job, "confirm") if waiting else None,
            "can_cancel": not job.is_finished,
            "can_retry": job.status in (BulkJob.FAILED, BulkJob.PARTIAL)
            and job.chunks.filter(state=BulkChunk.FAILED).exists(),
            "downloads": [
                (fmt.upper(), reverse("admin:bulkops_bulkjob_failed_rows", args=[job.pk, fmt]))
                for fmt in preview.download_formats(job)
            ]
            if has_errors and preview.job_columns(job)
            else [],
            "model_name": model_name(job),
            "model_changelist_url": self._model_changelist_url(request, job),
            "import_url": self._import_url(job),
            "atomic_note": self._atomic_note(job),
            "chunk_states": self._chunk_states(job),
        }
        if job.is_finished:
            context["outcome"] = outcome_sentence(job)
            if job.user_id == request.user.pk and context["model_changelist_url"]:
                level = messages.SUCCESS if job.status == BulkJob.COMPLETED else messages.WARNING
                messages.add_message(
                    request,
                    level,
                    format_html(
                        '{} <a href="{}">See the {}.</a>',
                        context["outcome"],
                        context["model_changelist_url"],
                        context["model_name"],
                    ),
                )
        if has_errors and (waiting or job.is_finished):
            number = request.GET.get("page", 1)
            if view == "rows":
                context["page"], context["failed_rows"] = preview.rows_page(job, number)
            else:
                context["page"], context["error_lines"] = preview.errors_page(job, number)
            context["columns"] = preview.job_columns(job)
            context["page_links"] = self._page_links(job, view, context["page"])
        context["chunks_page"], context["chunks"] = self._chunks(job, request.GET.get("chunks"))
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.job_template, context)

    def _title(self, job: BulkJob) -> str:
        what = job.filename or f"{model_name(job)} from the {job.get_source_display()}"
        if job.status == BulkJob.VALIDATED and job.confirmed_at is None:
            return f"Check {what} before importing it"
        return f"Import of {what}"

    def _model_changelist_url(self, request: HttpRequest, job: BulkJob) -> str | None:
        model = model_of(job)
        import_admin = self._import_admin(job)
        if (
            model is None
            or import_admin is None
            or not import_admin.has_view_or_change_permission(request)
        ):
            return None
        opts = model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def _import_url(self, job: BulkJob) -> str | None:
        model = model_of(job)
        if model is None:
            return None
        opts = model._meta
        try:
            return reverse(f"admin:{opts.app_label}_{opts.model_name}_bulk_import")
        except NoReverseMatch:
            return None

    @staticmethod
    def _atomic_note(job: BulkJob) -> str:
        if job.atomic == "all":
            return "All or nothing: if any row fails, nothing is written."
        if job.atomic == "chunk":
            return (
                f"Each chunk of {job.chunk_size:,} rows is all or nothing: a chunk with a "
                "failed row is not written."
            )
        return "Every valid row is written; failed rows are skipped."

    @staticmethod
    def _chunk_states(job: BulkJob) -> list[tuple[str, int]]:
        counts = _count_states(job)
        labels = dict(BulkChunk.STATES)
        return [(labels[state], counts[state]) for state in labels if counts.get(state)]

    def _chunks(self, job: BulkJob, number: Any) -> tuple[Any, list[BulkChunk]]:
        from django.core.paginator import Paginator

        chunks = job.chunks.order_by("index").only(
            "index",
            "start",
            "size",
            "first_row",
            "state",
            "failed_stage",
            "attempts",
            "error",
            "invalid",
            "created",
            "updated",
            "deleted",
            "errors",
            "rolled_back",
            "job_id",
        )
        page = Paginator(chunks, CHUNKS_PER_PAGE).get_page(number)
        return page, list(page.object_list)

    @staticmethod
    def _page_links(job: BulkJob, view: str, page: Any) -> dict[str, str | None]:
        def link(number: int) -> str:
            return f"?{urlencode({'view': view, 'page': number})}#bulkops-preview"

        return {
            "previous": link(page.previous_page_number()) if page.has_previous() else None,
            "next": link(page.next_page_number()) if page.has_next() else None,
            "first": link(1) if page.number > 1 else None,
            "last": link(page.paginator.num_pages) if page.has_next() else None,
        }

    def status_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """The job's state as JSON, for the page's progress bar."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        job = self._job(request, job_id)
        progress = job.progress
        updated = progress.get("updated_at")
        if isinstance(updated, datetime.datetime):
            progress = {**progress, "updated_at": updated.isoformat()}
        response = JsonResponse(
            {
                "id": str(job.pk),
                "status": job.status,
                "status_label": job.get_status_display(),
                "stage": job.stage,
                "stage_label": job.get_stage_display(),
                "finished": job.is_finished,
                "waiting_for_confirmation": job.status == BulkJob.VALIDATED
                and job.confirmed_at is None,
                "progress": progress,
                "text": progress_text(job, job.progress),
                "chunks": dict(_count_states(job)),
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def _post_only(self, request: HttpRequest) -> HttpResponse | None:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return None

    def confirm_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """Confirm import: the rows validated in the preview are written, nothing is read again."""
        if refused := self._post_only(request):
            return refused
        job = self._job(request, job_id)
        if reason := self._owner_may(request, job, "confirm"):
            messages.error(request, reason)
            return HttpResponseRedirect(job_url(job))
        already = job.confirmed_at is not None
        try:
            job = services.confirm_job(job=job, user=request.user)
        except BulkOpsError as exc:
            messages.error(request, exc.message)
        else:
            if already:
                messages.info(request, "This import was confirmed before; it is not run twice.")
            else:
                valid = max(job.rows_validated - job.invalid_rows, 0)
                messages.success(request, f"Import confirmed: writing {valid:,} rows.")
        return HttpResponseRedirect(job_url(job))

    def cancel_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        if refused := self._post_only(request):
            return refused
        job = self._job(request, job_id)
        try:
            job = services.cancel_job(job=job, user=request.user)
        except BulkOpsError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "The job was cancelled; nothing more of it will be written.")
        return HttpResponseRedirect(job_url(job))

    def retry_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        if refused := self._post_only(request):
            return refused
        job = self._job(request, job_id)
        try:
            job = services.retry_failed_chunks(job=job, user=request.user)
        except BulkOpsError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "The failed chunks run again.")
        return HttpResponseRedirect(job_url(job))

    def edit_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """Fix in place: the edited cells of one page of failed rows are validated again."""
        if refused := self._post_only(request):
            return refused
        job = self._job(request, job_id)
        number = request.POST.get("page", 1)
        back = f"{job_url(job)}?{urlencode({'view': 'rows', 'page': number})}#bulkops-preview"
        if reason := self._owner_may(request, job, "change"):
            messages.error(request, reason)
            return HttpResponseRedirect(back)
        if job.status != BulkJob.VALIDATED or job.confirmed_at is not None:
            messages.error(request, "Rows can be fixed only before the import is confirmed.")
            return HttpResponseRedirect(job_url(job))
        _, rows = preview.rows_page(job, number)
        edits = preview.parse_edits(job, rows, request.POST)
        if not edits:
            messages.info(request, "No cell was changed.")
            return HttpResponseRedirect(back)
        try:
            outcome = services.revalidate_rows(job=job, user=request.user, edits=edits)
        except BulkOpsError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(back)
        fixed = sorted(row for row, errors in outcome.items() if not errors)
        still = sorted(row for row, errors in outcome.items() if errors)
        if fixed:
            rows_text = ", ".join(str(row) for row in fixed)
            noun = "Row" if len(fixed) == 1 else "Rows"
            verb = "is" if len(fixed) == 1 else "are"
            messages.success(request, f"{noun} {rows_text} {verb} valid now and will be imported.")
        for row in still:
            messages.warning(request, f"Row {row} still has errors: {flatten_errors(outcome[row])}")
        return HttpResponseRedirect(back)

    def failed_rows_view(self, request: HttpRequest, job_id: Any, fmt: str) -> HttpResponse:
        """The failed rows as uploaded, with ``row`` and ``errors`` columns."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        job = self._job(request, job_id)
        if fmt not in preview.FAILED_ROW_FORMATS or not preview.job_columns(job):
            raise Http404("No such download.")
        stem = (job.filename or "rows").rsplit(".", 1)[0] or "rows"
        return FileResponse(
            preview.write_failed_rows(job, fmt),
            as_attachment=True,
            filename=f"{stem}-failed-rows.{fmt}",
        )


def _count_states(job: BulkJob) -> dict[str, int]:
    from django.db.models import Count

    return {
        row["state"]: row["n"]
        for row in job.chunks.order_by().values("state").annotate(n=Count("id"))
    }
