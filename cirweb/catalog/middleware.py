"""Refuse an upload that is too large from its Content-Length, before Django reads the body to disk."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

UPLOAD_PATH = "/api/uploads"
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file


class UploadSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == UPLOAD_PATH:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.CIR_UPLOAD_MAX_BYTES
            if length > limit + MULTIPART_OVERHEAD:
                return JsonResponse(
                    {"detail": f"The file is {length / 2**20:.1f} MB; the limit is {limit // 2**20} MB."}, status=413
                )
        return self.get_response(request)
