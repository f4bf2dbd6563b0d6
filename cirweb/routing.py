from django.urls import path

from cirweb.catalog.consumers import JobProgressConsumer
from cirweb.conversations.consumers import ConversationConsumer

websocket_urlpatterns = [
    path("ws/conversations/<str:conversation_id>/", ConversationConsumer.as_asgi()),
    path("ws/admin/jobs/<int:job_id>/", JobProgressConsumer.as_asgi()),
]
