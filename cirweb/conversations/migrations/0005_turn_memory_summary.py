from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_turn_memory"),
    ]

    operations = [
        migrations.AddField(
            model_name="turn",
            name="memory_summary",
            field=models.TextField(
                blank=True,
                help_text="What the conversation memory used, in words, as the page showed it ('' without memory).",
            ),
        ),
    ]
