from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_delivery_guarantees"),
    ]

    operations = [
        migrations.AddField(
            model_name="turn",
            name="memory",
            field=models.BooleanField(
                default=False,
                help_text="Steer the query by the conversation: earlier requests and rejected images.",
            ),
        ),
    ]
