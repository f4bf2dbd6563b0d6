"""Django settings: the one module that reads the environment.

Every knob is an environment variable with a safe development default; see the README's Configuration
table. Secrets have no default: without DJANGO_SECRET_KEY a random key is created once under CIR_DATA_DIR.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from foundation.log_lines import log_format_check, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None


# Several processes (web, workers) share the SQLite file: WAL lets readers and a writer work at once.
SQLITE_OPTIONS = {
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def env_networks(name: str, default: str) -> list[str]:
    """Addresses or networks ("10.0.0.5", "10.0.0.0/8", "::1"), comma-separated, or "*" for every peer; a
    misspelt one is refused here rather than silently never matching."""
    value = os.environ.get(name, default).strip()
    if value == "*":
        return ["*"]
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not an address or a network (e.g. 10.0.0.5, 10.0.0.0/8, ::1), nor '*'"
            ) from None
    return entries


def env_paths(name: str, default: list[Path]) -> list[Path]:
    """A list of folders, separated like PATH (":" on Linux), resolved to absolute paths."""
    value = os.environ.get(name, "")
    return [Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p] if value else default


# Django's docs: persistent connections are not right under ASGI (each request may run on another thread,
# and connections then pile up). The web process closes them (but the websocket consumers' own thread keeps
# its one: cirweb/transport/socket_database.py); workers, one thread each, keep theirs.
# https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-database-connections
CONN_MAX_AGE = 0 if os.environ.get("CIR_PROCESS") == "web" else 600


def database_from_url(url: str, data_dir: Path) -> dict[str, object]:
    """DATABASE_URL (postgres://user:pass@host:port/name or sqlite:///path) as a DATABASES entry."""
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": data_dir / "cirweb.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": CONN_MAX_AGE,  # workers keep theirs: opening one costs milliseconds on every turn
        }
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": True,
        }
    if parsed.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": unquote(parsed.path) or data_dir / "cirweb.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": CONN_MAX_AGE,
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported: use postgres:// or sqlite://")


# --- Core ---------------------------------------------------------------------------------------------
CIR_DATA_DIR = Path(os.environ.get("CIR_DATA_DIR") or BASE_DIR / "var").resolve()
# Prometheus' multiprocess mode (cirweb/processes/metrics.py): every process of this host records into this
# folder, which prometheus-client reads when first imported, so it is set here, before any import of it.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(CIR_DATA_DIR / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = CIR_DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        CIR_DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
    except FileExistsError:  # another process created it between our read and write
        return path.read_text().strip()


SECRET_KEY = _secret_key()

INSTALLED_APPS = [
    "daphne",  # `runserver` only (development); `serve` and containers run uvicorn, see cirweb/processes/webserver.py
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # serves Swagger UI's files itself: /api/docs works offline (no CDN)
    "csp",
    "cirweb.catalog",
    "cirweb.conversations",
    "cirweb.operations",  # the admin's Operations page
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "cirweb.transport.head.api_head_as_get",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "cirweb.transport.database_away.DatabaseAwayMiddleware",  # a view that met the database away: 503, a sentence
]

ROOT_URLCONF = "cirweb.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "cirweb" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "cirweb.wsgi.application"
ASGI_APPLICATION = "cirweb.asgi.application"

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", ""), CIR_DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CIR_DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from here after collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve app static files without a collectstatic step in development

# Sessions last a month: anonymous visitors keep their conversations (they own them through the session).
SESSION_COOKIE_AGE = 30 * 24 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)

# Content-Security-Policy (django-csp, https://django-csp.readthedocs.io/): scripts and styles from our own
# origin only, never inline; websockets to our own origin. The admin's own scripts are files too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# --- Production: one switch, DJANGO_ENV=production (compose sets it) ------------------------------------
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto. https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use 'development' or 'production'")
if DJANGO_ENV == "production":
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production")
    if os.environ.get("CIR_TEST_FAULTS_FILE"):  # sleeps, kills, a full disk (cirweb/processes/faults.py)
        raise ImproperlyConfigured("CIR_TEST_FAULTS_FILE injects faults for the test suite: unset it in production")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        raise ImproperlyConfigured("DJANGO_ENV=production needs DJANGO_SECRET_KEY (at least 50 random characters)")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    # container probes and the Prometheus scrape (this machine or CIR_METRICS_ALLOWED only) speak plain HTTP
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REFERRER_POLICY = "same-origin"
    SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Uploads: a 20 MB file limit, stated on the page and enforced by the upload service.
CIR_UPLOAD_MAX_BYTES = env_int("CIR_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CIR_UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Every other request body (forms, JSON): refused with 413 as it arrives, before anything buffers it
# (cirweb/transport/bodylimit.py). Uploads may carry CIR_UPLOAD_MAX_BYTES plus the form around the file.
CIR_REQUEST_MAX_BYTES = env_int("CIR_REQUEST_MAX_BYTES", 1024 * 1024)
CIR_MULTIPART_OVERHEAD = 64 * 1024

# --- Redis: broker, result store and channel layer -------------------------------------------------------
# Unset: `manage.py serve` starts a private Redis on this port (see cirweb/processes/devservers.py).
CIR_PRIVATE_REDIS_PORT = env_int("CIR_PRIVATE_REDIS_PORT", 6399)
CIR_REDIS_URL = os.environ.get("CIR_REDIS_URL") or f"redis://127.0.0.1:{CIR_PRIVATE_REDIS_PORT}/0"
CIR_REDIS_IS_PRIVATE = not os.environ.get("CIR_REDIS_URL")

# Channels: https://channels.readthedocs.io/en/stable/topics/channel_layers.html
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "cirweb.transport.channel_layer.PipelinedRedisChannelLayer",  # channels-redis, fewer round trips
        # redis-py 8 times reads out after 5 s by default, the same 5 s that channels-redis blocks waiting for
        # a message: an idle socket's consumer would die. Reads may block longer than the wait, never less.
        "CONFIG": {
            "hosts": [{"address": CIR_REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

# Django's cache on the same Redis: rate-limit counters and the readiness check's cached answer, shared
# by every web process. https://docs.djangoproject.com/en/5.2/topics/cache/#redis
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CIR_REDIS_URL,
        "KEY_PREFIX": "cirweb",
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

# Per-visitor limits (cirweb/conversations/limits.py, on django-ratelimit: https://django-ratelimit.readthedocs.io/).
# Rates are "<count>/<s|m|h|d>", counted per session (the visitor) and per client address; past one, a
# websocket frame gets an `error` frame with code `rate_limited` and `retry_after`, HTTP a 429 with Retry-After.
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = env_bool("CIR_RATELIMIT_ENABLE", True)
CIR_TURNS_IN_FLIGHT = env_int("CIR_TURNS_IN_FLIGHT", 3)  # a visitor's turns queued or running at once
CIR_RATE_TURNS = os.environ.get("CIR_RATE_TURNS", "30/m")  # turn.create and turn.more frames
CIR_RATE_UPLOADS = os.environ.get("CIR_RATE_UPLOADS", "10/m")
CIR_UPLOAD_BYTES_PER_DAY = env_int("CIR_UPLOAD_BYTES_PER_DAY", 200 * 1024 * 1024)
CIR_RATE_SEARCH = os.environ.get("CIR_RATE_SEARCH", "30/m")  # POST /api/search
CIR_RATE_CONVERSATIONS = os.environ.get("CIR_RATE_CONVERSATIONS", "10/m")  # POST /api/conversations
CIR_ADDRESS_FACTOR = env_int("CIR_ADDRESS_FACTOR", 10)  # an address (NAT, office) may do this many visitors' worth
# The reverse proxies whose X-Forwarded-For (and -Proto) the web server believes: behind them each visitor is
# counted by the address the proxy forwards, not the proxy's own (docs/deploy.md, "Behind a reverse proxy").
# A header from any other peer is ignored, so a visitor cannot pick an address to escape the limits.
CIR_TRUSTED_PROXIES = env_networks("CIR_TRUSTED_PROXIES", "127.0.0.1,::1")
# Who may read GET /metrics besides this machine: a Prometheus server's address or network (empty: nobody).
CIR_METRICS_ALLOWED = env_networks("CIR_METRICS_ALLOWED", "")

# Celery: https://docs.celeryq.dev/en/stable/userguide/configuration.html (read by cirweb/celery_app.py)
CELERY_BROKER_URL = os.environ.get("CIR_BROKER_URL") or CIR_REDIS_URL
CELERY_RESULT_BACKEND = CIR_REDIS_URL
CELERY_TASK_ALWAYS_EAGER = False
# Celery's Django fix-up closes every database connection before and after each task unless told to reuse
# them, so a worker would open one per turn (a new SQLite connection loads the schema: about 1.5 ms; a
# PostgreSQL one is a TCP and authentication round trip). Reused here without a count; workers/tasks.py
# applies CONN_MAX_AGE and drops broken connections at each task's ends, as Django does around a request.
CELERY_DB_REUSE_MAX = 2**62

# --- The engine ------------------------------------------------------------------------------------------
# The default models are the ones `bootstrap_demo` installs (the shapes world's tiny CLIP and Combiner).
CIR_MODELS_DIR = CIR_DATA_DIR / "models"
# Confinement of what staff may name in the admin. Collections are read only from folders under the source
# roots (never the uploads, models, index or thumbnail folders, even when a root contains them); model
# checkpoints, TorchScript included, load only from the model roots (the defaults: the data directory's
# models/ and the repository's committed models/).
CIR_SOURCE_ROOTS = env_paths("CIR_SOURCE_ROOTS", [CIR_DATA_DIR / "sources", CIR_DATA_DIR / "worlds"])
CIR_MODEL_ROOTS = env_paths("CIR_MODEL_ROOTS", [CIR_MODELS_DIR, BASE_DIR / "models"])
CIR_CLIP_MODEL = os.environ.get("CIR_CLIP_MODEL") or str(CIR_MODELS_DIR / "shapes-clip.pt")
CIR_COMBINER = os.environ.get("CIR_COMBINER") or str(CIR_MODELS_DIR / "shapes-combiner.pt")
# the judge that re-ranks a Combiner's first candidates (retrieval/models/judge.py), used for the CLIP it was
# trained for (its checkpoint records that CLIP's SHA-256); "none": no judge
CIR_JUDGE = os.environ.get("CIR_JUDGE") or str(CIR_MODELS_DIR / "shapes-judge.pt")
CIR_DEVICE = os.environ.get("CIR_DEVICE", "cpu")
# Encoders pick bf16 / channels_last / int8 text per machine (retrieval/models/precision.py); 1 keeps plain fp32.
CIR_FORCE_FP32 = env_bool("CIR_FORCE_FP32", False)
# index processes compile real-size ResNet image towers (retrieval.models.precision); 0 keeps them eager
CIR_COMPILE_IMAGES = env_bool("CIR_COMPILE_IMAGES", True)
# intra-op threads of each search process (retrieval.models.precision.compute_threads_set): more processes, not threads
CIR_SEARCH_THREADS = env_int("CIR_SEARCH_THREADS", 1)
CIR_COLLECTIONS_DIR = CIR_DATA_DIR / "collections"
# The shared store every host reads (foundation/shared_store.py): finished index versions, a reindex's chunks,
# upload features. A folder (an NFS mount when there are several hosts) or a file:// URL. Each worker serves
# from its own local cache, never memory-mapping the store itself, and keeps CIR_CACHE_VERSIONS versions there.
# Or s3://bucket/prefix (foundation/s3_store.py): credentials and region from boto3's standard AWS_* variables
# (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html); CIR_S3_ENDPOINT_URL
# points boto3 at an S3-compatible server (MinIO, Ceph) instead of AWS.
CIR_STORE_URL = os.environ.get("CIR_STORE_URL") or str(CIR_DATA_DIR / "store")
CIR_S3_ENDPOINT_URL = os.environ.get("CIR_S3_ENDPOINT_URL") or None
CIR_CACHE_DIR = Path(os.environ.get("CIR_CACHE_DIR") or CIR_DATA_DIR / "cache").resolve()
CIR_CACHE_VERSIONS = env_int("CIR_CACHE_VERSIONS", 4)  # index versions a host keeps in its local cache
CIR_UPLOADS_DIR = CIR_DATA_DIR / "uploads"
CIR_THUMBS_DIR = CIR_DATA_DIR / "thumbs"
CIR_THUMB_SIZE = 256
CIR_TEXT_MAX_CHARS = 1000
CIR_K_MAX = 200
CIR_SEARCH_TIME_LIMIT = env_int("CIR_SEARCH_TIME_LIMIT", 60)
CIR_TURN_EXPIRES = env_int("CIR_TURN_EXPIRES", 120)  # seconds a queued turn may wait before it fails

# --- Guarantees: every turn comes back, every job ends (README "Faults"; owned by workers/sweep.py) ----------
CIR_SWEEP_EVERY = float(os.environ.get("CIR_SWEEP_EVERY", "2"))  # seconds between sweeps
CIR_TURN_RESEND_AFTER = env_int("CIR_TURN_RESEND_AFTER", 10)  # a queued turn nobody took: send its task again
CIR_TURN_MAX_ATTEMPTS = 3  # a turn whose worker died this many times while answering it fails
CIR_JOB_RESEND_AFTER = env_int("CIR_JOB_RESEND_AFTER", 60)  # a queued job nobody took: send it again
CIR_JOB_STALE_AFTER = env_int("CIR_JOB_STALE_AFTER", 120)  # a running job silent this long lost its worker
CIR_JOB_MAX_ATTEMPTS = env_int("CIR_JOB_MAX_ATTEMPTS", 3)  # a job that killed its worker this often fails
CIR_JOB_QUEUED_EXPIRES = env_int("CIR_JOB_QUEUED_EXPIRES", 3600)  # a job no worker took in an hour fails
CIR_REINDEX_CHUNK = env_int("CIR_REINDEX_CHUNK", 1024)  # images per resumable chunk of a reindex
CIR_SOCKET_RECONCILE_EVERY = float(os.environ.get("CIR_SOCKET_RECONCILE_EVERY", "2"))  # socket vs database
CIR_FAULTS_FILE: str | None = None  # fault injection (cirweb/processes/faults.py): set by the test settings only

# --- Retention (manage.py prune; the sweep process also prunes every CIR_PRUNE_EVERY seconds) --------------
CIR_UPLOAD_RETENTION_DAYS = env_int("CIR_UPLOAD_RETENTION_DAYS", 30)
CIR_KEEP_INDEX_VERSIONS = env_int("CIR_KEEP_INDEX_VERSIONS", 2)  # the active one plus the newest others
CIR_PRUNE_EVERY = env_int("CIR_PRUNE_EVERY", 6 * 3600)  # seconds between two prunes by the sweep process

# --- Health (cirweb/processes/health.py) ----------------------------------------------------------------------------
CIR_READY_CACHE_SECONDS = env_int("CIR_READY_CACHE_SECONDS", 5)

CIR_LOG_LEVEL = os.environ.get("CIR_LOG_LEVEL", "INFO").upper()  # every process's log level, the web server's too
# "text" (lines for people) or "json" (one object a line, for a log collector); a turn's lines carry its ids
try:
    CIR_LOG_FORMAT = log_format_check(os.environ.get("CIR_LOG_FORMAT", "text"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
LOGGING = logging_config(level=CIR_LOG_LEVEL, log_format=CIR_LOG_FORMAT)  # also uvicorn's and Celery's
LOGGING_CONFIG = "foundation.log_lines.logging_apply"
