"""ASGI entry point: HTTP through Django, websockets through Channels (added with the pipeline)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cirweb.settings")
application = get_asgi_application()
