from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "cirweb.conversations"
    label = "conversations"
    verbose_name = "Query history"
