"""ASGI entry point: HTTP through Django, websockets through Channels behind the origin and auth checks."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cirweb.settings")
django_app = get_asgi_application()  # sets Django up before the consumers import models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cirweb.routing import websocket_urlpatterns  # noqa: E402
from cirweb.transport.bodylimit import BodySizeLimit  # noqa: E402
from cirweb.transport.database_away import DatabaseAwaySockets  # noqa: E402


def body_limit(path: str) -> int:
    """Uploads may carry a file and its form; every other URL a small form or JSON document."""
    from django.conf import settings

    if path == "/api/uploads":
        return settings.CIR_UPLOAD_MAX_BYTES + settings.CIR_MULTIPART_OVERHEAD
    return settings.CIR_REQUEST_MAX_BYTES


application = ProtocolTypeRouter(
    {
        "http": BodySizeLimit(django_app, body_limit),
        "websocket": AllowedHostsOriginValidator(
            DatabaseAwaySockets(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
