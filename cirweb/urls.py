from django.contrib import admin
from django.urls import path

from cirweb.api.api import api
from cirweb.catalog import views as catalog_views
from cirweb.conversations import views as chat_views
from cirweb.operations import views as operations_views
from cirweb.pages import favicon
from cirweb.processes.health import healthz, livez
from cirweb.processes.metrics import metrics_view

urlpatterns = [
    path("", chat_views.chat, name="chat"),
    path("c/<uuid:conversation_id>", chat_views.chat, name="conversation"),
    # staff only, refused like the rest of the admin (admin_view: the login page for anyone else); before
    # admin.site.urls, whose last pattern takes every other path under admin/
    path("admin/operations/", admin.site.admin_view(operations_views.operations_page), name="admin-operations"),
    path(
        "admin/operations/figures",
        admin.site.admin_view(operations_views.operations_figures),
        name="admin-operations-figures",
    ),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", healthz, name="readyz"),
    path("livez", livez, name="livez"),
    path("favicon.ico", favicon, name="favicon"),
    path("metrics", metrics_view, name="metrics"),
    path("images/<int:image_id>", catalog_views.image_file, name="image"),
    path("images/<int:image_id>/thumb", catalog_views.image_thumb, name="image-thumb"),
    path("uploads/<int:upload_id>", catalog_views.upload_file, name="upload"),
    path("uploads/<int:upload_id>/thumb", catalog_views.upload_thumb, name="upload-thumb"),
]

handler404 = "cirweb.pages.not_found"
handler500 = "cirweb.pages.server_error"
