"""Conversations and their turns. Turns form a tree through `parent`: any earlier turn can be branched from."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from cirweb.catalog.models import Collection, Image, IndexVersion, Upload
from cirweb.transport.protocol import DEFAULT_K


class Conversation(models.Model):
    """Owned by a logged-in user, or by an anonymous visitor (a random id kept in their session)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    owner_visitor = models.CharField(max_length=64, blank=True, db_index=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]

    def __str__(self) -> str:
        return self.title or f"Conversation {str(self.id)[:8]}"


class Turn(models.Model):
    class Mode(models.TextChoices):
        COMBINER = "combiner", "Combined"
        SUM = "sum", "Sum"
        TEXT = "text", "Text only"
        IMAGE = "image", "Image only"

    class Status(models.TextChoices):
        """queued -> running -> done | failed; "more" takes a done turn back to queued. Every transition is a
        conditional update in `cirweb.conversations.states`, so a late or repeated message is a no-op."""

        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    PENDING = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.DONE, Status.FAILED)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    client_id = models.CharField(max_length=64, blank=True)
    reference_image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reference_upload = models.ForeignKey(Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.COMBINER)
    k = models.PositiveSmallIntegerField(default=DEFAULT_K)
    exclude_seen = models.BooleanField(default=True)
    # Off by default: on the shapes benchmark it did not beat the memoryless query by the required margin
    # (README, "Multi-turn").
    memory = models.BooleanField(
        default=False, help_text="Steer the query by the conversation: earlier requests and rejected images."
    )
    memory_summary = models.TextField(
        blank=True, help_text="What the conversation memory used, in words, as the page showed it ('' without memory)."
    )
    pages = models.PositiveSmallIntegerField(default=1, help_text="Pages of k results asked for so far.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    timings_ms = models.JSONField(default=dict, blank=True)
    latency_ms = models.FloatField(null=True, blank=True, help_text="Queued to results stored.")
    index_version = models.ForeignKey(IndexVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    chosen_image = models.ForeignKey(
        Image,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The result the user refined from next.",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(
        default=timezone.now,
        db_index=True,
        help_text="When the latest request (the turn, or its last 'more') was queued.",
    )
    finished = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When its search task was last sent.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process that claimed it.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Claims of the current request.")

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"turn {self.pk}: {self.text[:40]!r}"


class TurnResult(models.Model):
    """One ranked result of a turn (rank 0 is the best)."""

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="results")
    rank = models.PositiveIntegerField()
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        ordering = ["turn", "rank"]
        constraints = [models.UniqueConstraint(fields=["turn", "rank"], name="unique_rank_per_turn")]

    def __str__(self) -> str:
        return f"turn {self.turn_id} #{self.rank}: image {self.image_id}"


class Feedback(models.Model):
    class Value(models.TextChoices):
        CHOSEN = "chosen", "Chosen"
        REJECTED = "rejected", "Rejected"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="feedback")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=16, choices=Value.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["turn", "image"], name="one_feedback_per_result")]

    def __str__(self) -> str:
        return f"{self.value} image {self.image_id} in turn {self.turn_id}"
