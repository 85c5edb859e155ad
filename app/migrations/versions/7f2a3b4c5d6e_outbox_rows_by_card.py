"""outbox rows by card

Revision ID: 7f2a3b4c5d6e
Revises: 6e1f2a3b4c5d
Create Date: 2026-11-30 01:25:00

Google's audience asks, in every posting's announce of a card without a synced object,
whether one of the card's rows is on its way; a card's deletion cascades to its rows. Both
read the whole outbox without an index on ``card_id``: 52 ms a posting with a million rows
waiting (benchmarks/RESULTS.md).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7f2a3b4c5d6e'
down_revision = '6e1f2a3b4c5d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pass_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_pass_outbox_card_id', ['card_id'], unique=False)


def downgrade():
    with op.batch_alter_table('pass_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_pass_outbox_card_id')
