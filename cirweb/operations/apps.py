from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """The admin's Operations page (issue 23): no models, a page and the figures it polls."""

    name = "cirweb.operations"
    label = "operations"
    verbose_name = "Operations"
