from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "cirweb.catalog"
    label = "catalog"
    verbose_name = "Collections"
