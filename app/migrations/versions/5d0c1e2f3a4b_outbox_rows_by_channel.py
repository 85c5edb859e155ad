"""outbox rows leased by channel

Revision ID: 5d0c1e2f3a4b
Revises: 0bb233266b2f
Create Date: 2026-11-30 00:00:00

Each channel's drain leases its own rows (Apple's pushes no longer wait for Google's
rate-limited patches in the same batch), oldest first: the lease reads an index on
(channel, id) in its order.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5d0c1e2f3a4b'
down_revision = '0bb233266b2f'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pass_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_pass_outbox_available_at_id')
        batch_op.create_index('ix_pass_outbox_channel_id', ['channel', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('pass_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_pass_outbox_channel_id')
        batch_op.create_index('ix_pass_outbox_available_at_id', ['available_at', 'id'],
                              unique=False)
