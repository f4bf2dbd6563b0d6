"""The processes of the pipeline and how they are run and watched: the web server, the development Redis,
health and liveness, fault points for the fault suite, and the management commands' help."""
