"""``BulkImportMixin``: the spreadsheet import of a bulk-enabled ModelAdmin.

Add it in front of ``admin.ModelAdmin``::

    @admin.register(Product)
    class ProductAdmin(BulkImportExportMixin, admin.ModelAdmin):
        ...

The changelist gets an **Import spreadsheet** button leading to
``<changelist>/bulk-import/``: upload (file and options), the column-mapping step
when some header does not match a field, then the job page (validation progress,
preview, confirm; see ``bulkops.admin.jobs``). Every view runs through
``admin_site.admin_view`` (login, staff, CSRF on POST); every state change is a
POST. Which modes a user may choose follows their model permissions
(``get_bulk_import_modes``). The work itself is the jobs service's: the views
parse, check and render.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from import_export.admin import ExportMixin
from import_export.formats import base_formats

from bulkops.engine.readers.headers import FieldIndex
from bulkops.exceptions import BulkOpsError

from . import uploads
from .bulkmodel import bulk_model_for
from .columns import CONTENT_TYPES, TEMPLATE_FORMATS, expected_columns, template_file
from .forms import (
    ATOMIC_CHOICES,
    MappingForm,
    UploadForm,
    describe_suggestion,
    mode_choices,
    preview_to_session,
)
from .jobs import active_upload, job_url
from .mapping import (
    Column,
    FilePreview,
    check_mapping,
    field_choices,
    inspect_file,
    quick_header,
    remember_mapping,
    suggest_mapping,
)
from .resources import TextSafeXLSX, resource_for


class BulkImportMixin:
    """Spreadsheet import for a ModelAdmin whose model is bulk-enabled.

    Override ``get_bulk_import_modes`` to narrow the modes offered, and
    ``bulk_import_template`` / ``bulk_mapping_template`` to change the pages.
    """

    change_list_template = "admin/bulkops/change_list.html"
    #: The changelist template the import's one extends.
    bulk_import_base_change_list_template = "admin/change_list.html"
    bulk_import_template = "admin/bulkops/import_upload.html"
    bulk_mapping_template = "admin/bulkops/import_mapping.html"

    # -- set-up -----------------------------------------------------------------

    def get_bulk_model(self) -> Any:
        """The registry's entry for this admin's model (serializer, natural key)."""
        return bulk_model_for(self.model)  # type: ignore[attr-defined]

    def get_bulk_import_modes(self, request: HttpRequest) -> dict[str, str]:
        """The modes ``request.user`` may choose, with their explanations.

        create needs the add permission, update the change permission, upsert
        both (and a natural key to find the rows by).
        """
        bulk_model = self.get_bulk_model()
        can_add = self.has_add_permission(request)  # type: ignore[attr-defined]
        can_change = self.has_change_permission(request)  # type: ignore[attr-defined]
        explained = mode_choices(self.model, bulk_model.natural_key)  # type: ignore[attr-defined]
        allowed = {
            "create": can_add,
            "update": can_change,
            "upsert": can_add and can_change and bool(bulk_model.natural_key),
        }
        return {mode: text for mode, text in explained.items() if allowed[mode]}

    def has_bulk_import_permission(self, request: HttpRequest) -> bool:
        return bool(self.get_bulk_import_modes(request))

    def get_urls(self) -> list[Any]:
        opts = self.model._meta  # type: ignore[attr-defined]
        prefix = f"{opts.app_label}_{opts.model_name}"
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path(
                "bulk-import/",
                wrap(self.bulk_import_view),
                name=f"{prefix}_bulk_import",
            ),
            path(
                "bulk-import/template.<str:fmt>",
                wrap(self.bulk_import_template_view),
                name=f"{prefix}_bulk_import_template",
            ),
            path(
                "bulk-import/map/<str:token>/",
                wrap(self.bulk_mapping_view),
                name=f"{prefix}_bulk_import_map",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = dict(extra_context or {})
        extra_context["bulk_import_base_change_list_template"] = (
            self.bulk_import_base_change_list_template
        )
        if self.has_bulk_import_permission(request) and IS_POPUP_VAR not in request.GET:
            extra_context["bulk_import_url"] = self._url("bulk_import")
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    # -- helpers ----------------------------------------------------------------

    def _url(self, name: str, *args: Any) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}",  # type: ignore[attr-defined]
            args=args,
        )

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        opts = self.model._meta  # type: ignore[attr-defined]
        return {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": title,
            "opts": opts,
            "app_label": opts.app_label,
            "has_view_permission": self.has_view_permission(request),  # type: ignore[attr-defined]
            "changelist_url": reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"  # type: ignore[attr-defined]
            ),
            "upload_url": self._url("bulk_import"),
            **extra,
        }

    def _serializer(self, request: HttpRequest, bulk_model: Any) -> Any:
        return bulk_model.serializer_class(context={"request": request, "user": request.user})

    # -- views ------------------------------------------------------------------

    def bulk_import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload: the form, the expected columns and templates; POST starts the import."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        modes = self.get_bulk_import_modes(request)
        if not modes:
            raise PermissionDenied
        bulk_model = self.get_bulk_model()
        form = UploadForm(request.POST or None, request.FILES or None, modes=modes)
        if request.method == "POST" and form.is_valid():
            response = self._accept_upload(request, bulk_model, form)
            if response is not None:
                return response
        return self._render_upload(request, bulk_model, form)

    def _render_upload(self, request: HttpRequest, bulk_model: Any, form: UploadForm) -> Any:
        opts = self.model._meta  # type: ignore[attr-defined]
        context = self._context(
            request,
            f"Import {opts.verbose_name_plural} from a spreadsheet",
            form=form,
            columns=expected_columns(bulk_model),
            natural_key=bulk_model.natural_key,
            templates=[
                (fmt.upper(), self._url("bulk_import_template", fmt)) for fmt in TEMPLATE_FORMATS
            ],
            atomic_choices=ATOMIC_CHOICES,
        )
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        return TemplateResponse(request, self.bulk_import_template, context)

    def _accept_upload(
        self, request: HttpRequest, bulk_model: Any, form: UploadForm
    ) -> HttpResponse | None:
        """Read the header; start the job, or go to the mapping step. None: show the form
        again (the reason is an admin message)."""
        upload = form.cleaned_data["file"]
        options = {
            "mode": form.cleaned_data["mode"],
            "atomic": form.cleaned_data["atomic"],
            "chunk_size": form.cleaned_data["chunk_size"],
            "validate_only": form.cleaned_data["validate_only"],
            "sheet": form.cleaned_data["sheet"] or None,
        }
        running = active_upload(user=request.user, model_label=bulk_model.label)
        if running is not None:
            messages.error(
                request,
                format_html(
                    "Your upload of {} is still being validated; wait for it to finish or "
                    '<a href="{}">cancel it</a> before uploading another file.',
                    running.filename or "a file",
                    job_url(running),
                ),
            )
            return None
        serializer = self._serializer(request, bulk_model)
        try:
            # Most uploads match every column: their header alone decides, and the file
            # goes to its job without being decoded here.
            headers = quick_header(
                upload, upload.name, serializer=serializer, sheet=options["sheet"]
            )
            preview = None
            if headers is None:
                preview = inspect_file(
                    upload, upload.name, serializer=serializer, sheet=options["sheet"]
                )
                headers = None if preview.unmatched else preview.headers
            if headers is not None:
                index = FieldIndex(serializer)
                check_mapping(
                    headers,
                    {header: index.match(header) for header in headers},
                    serializer,
                    mode=options["mode"],
                    natural_key=bulk_model.natural_key,
                )
        except BulkOpsError as exc:
            messages.error(request, exc.message)
            return None
        if headers is not None:
            return self._start(request, bulk_model, upload, upload.name, options, None)
        assert preview is not None
        uploads.purge_stale()
        token = uploads.new_token()
        stored = uploads.save_pending(upload, token)
        uploads.remember(
            request.session,
            token,
            {
                "model": bulk_model.label,
                "file": stored,
                "filename": upload.name,
                "options": options,
                "format": preview.format,
                "sheet": preview.sheet,
                "total_rows": preview.total_rows,
                "columns": preview_to_session(preview),
            },
        )
        return HttpResponseRedirect(self._url("bulk_import_map", token))

    def _start(
        self,
        request: HttpRequest,
        bulk_model: Any,
        fileobj: Any,
        filename: str,
        options: dict[str, Any],
        column_map: dict[str, str | None] | None,
    ) -> HttpResponse | None:
        from bulkops.jobs import services as job_services

        validate_only = options["validate_only"]
        try:
            job = job_services.start_file_job(
                user=request.user,
                model=bulk_model.label,
                file=fileobj,
                filename=filename,
                mode=options["mode"],
                atomic=options["atomic"],
                chunk_size=options["chunk_size"],
                dry_run=validate_only,
                confirm=not validate_only,
                column_map=column_map,
                sheet=options["sheet"],
                source="admin",
            )
        except BulkOpsError as exc:
            messages.error(request, exc.message)
            return None
        what = "validated (nothing will be written)" if validate_only else "validated"
        messages.info(request, f"{filename} was uploaded and is being {what}.")
        return HttpResponseRedirect(job_url(job))

    def bulk_import_template_view(self, request: HttpRequest, fmt: str) -> HttpResponse:
        """An empty file with the import's columns (CSV, or XLSX with a column guide)."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        if not self.has_bulk_import_permission(request):
            raise PermissionDenied
        if fmt not in TEMPLATE_FORMATS:
            raise Http404(f"Templates are {' or '.join(TEMPLATE_FORMATS)}.")
        bulk_model = self.get_bulk_model()
        response = HttpResponse(template_file(bulk_model, fmt), content_type=CONTENT_TYPES[fmt])
        name = self.model._meta.model_name  # type: ignore[attr-defined]
        response["Content-Disposition"] = f'attachment; filename="{name}-import-template.{fmt}"'
        return response

    def bulk_mapping_view(self, request: HttpRequest, token: str) -> HttpResponse:
        """Map the columns that did not match a field; POST confirms (or cancels)."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        modes = self.get_bulk_import_modes(request)
        if not modes:
            raise PermissionDenied
        bulk_model = self.get_bulk_model()
        state = uploads.recall(request.session, token)
        if state is None or state.get("model") != bulk_model.label:
            messages.error(
                request, "This upload is no longer waiting for its columns; upload the file again."
            )
            return HttpResponseRedirect(self._url("bulk_import"))
        options = state["options"]
        if options["mode"] not in modes:
            raise PermissionDenied
        if request.method == "POST" and "cancel" in request.POST:
            uploads.delete_pending(state["file"])
            uploads.forget(request.session, token)
            messages.info(request, f"The upload of {state['filename']} was cancelled.")
            return HttpResponseRedirect(self._url("bulk_import"))
        serializer = self._serializer(request, bulk_model)
        with_id = options["mode"] == "update" or not bulk_model.natural_key
        preview = FilePreview(
            format=state["format"],
            sheet=state["sheet"],
            columns=[Column(**column) for column in state["columns"]],
            data_rows=0,
            total_rows=state["total_rows"],
        )
        remembered = suggest_mapping(
            preview, serializer, model_label=bulk_model.label, with_id=with_id
        )
        columns = [
            {
                **column,
                "suggested": found.suggested,
                "reason": describe_suggestion(found.reason),
            }
            for column, found in zip(state["columns"], preview.columns, strict=True)
        ]
        form = MappingForm(
            request.POST if request.method == "POST" else None,
            preview_columns=columns,
            field_choices=field_choices(serializer, with_id=with_id),
        )
        problem = None
        if request.method == "POST" and form.is_valid():
            mapping = form.mapping()
            try:
                check_mapping(
                    preview.headers,
                    mapping,
                    serializer,
                    mode=options["mode"],
                    natural_key=bulk_model.natural_key,
                )
            except BulkOpsError as exc:
                problem = exc.message
            else:
                remember_mapping(
                    model_label=bulk_model.label,
                    headers=preview.headers,
                    mapping=mapping,
                    user=request.user,
                )
                with uploads.open_pending(state["file"]) as stored:
                    response = self._start(
                        request, bulk_model, stored, state["filename"], options, mapping
                    )
                if response is not None:
                    uploads.delete_pending(state["file"])
                    uploads.forget(request.session, token)
                    return response
        opts = self.model._meta  # type: ignore[attr-defined]
        context = self._context(
            request,
            f"Match the columns of {state['filename']}",
            form=form,
            rows=form.rows(),
            problem=problem,
            remembered=remembered,
            filename=state["filename"],
            options=options,
            mode_label=mode_choices(self.model, bulk_model.natural_key)[options["mode"]],  # type: ignore[attr-defined]
            unmatched=len(preview.unmatched),
            total_rows=state["total_rows"],
            verbose_name_plural=opts.verbose_name_plural,
        )
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        return TemplateResponse(request, self.bulk_mapping_template, context)


def _export_formats() -> list[type]:
    """The formats both the export writes and the import reads, where their library is
    installed (XLSX needs openpyxl, ODS odfpy)."""
    wanted = (
        base_formats.CSV,
        TextSafeXLSX,
        base_formats.TSV,
        base_formats.ODS,
        base_formats.JSON,
    )
    return [fmt for fmt in wanted if fmt.is_available()]


class BulkImportExportMixin(BulkImportMixin, ExportMixin):
    """``BulkImportMixin`` plus django-import-export's export, on the import's columns.

    The export resource is built from the same serializer (``resource_for``), so an
    exported file goes back in as an upsert without a header edit. Set
    ``resource_classes`` to export other columns instead.
    """

    # The changelist template is ours (Import spreadsheet, Export, Add); the export
    # mixin must not wrap it in its own.
    import_export_change_list_template = None

    @property
    def export_formats(self) -> list[type]:
        return _export_formats()

    def get_export_resource_classes(self, request: HttpRequest) -> list[type]:
        if getattr(self, "resource_classes", None):
            return super().get_export_resource_classes(request)
        return [resource_for(self.get_bulk_model())]

    def get_data_for_export(self, request: HttpRequest, queryset: Any, **kwargs: Any) -> Any:
        dataset = super().get_data_for_export(request, queryset, **kwargs)
        dataset.title = str(self.model._meta.verbose_name_plural).capitalize()
        return dataset
