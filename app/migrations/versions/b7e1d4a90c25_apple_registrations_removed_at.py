"""apple registrations: removed_at

A removed pass keeps its registration, marked removed, and the card index carries it.

Revision ID: b7e1d4a90c25
Revises: 9d3e7b52c1a4
Create Date: 2026-11-29 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e1d4a90c25'
down_revision = '9d3e7b52c1a4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apple_registrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index('ix_apple_registrations_card_id')
        batch_op.create_index('ix_apple_registrations_card_id_removed_at',
                              ['card_id', 'removed_at'], unique=False)


def downgrade():
    # Removed registrations were deleted before this column: delete them again.
    op.execute('DELETE FROM apple_registrations WHERE removed_at IS NOT NULL')
    with op.batch_alter_table('apple_registrations', schema=None) as batch_op:
        batch_op.drop_index('ix_apple_registrations_card_id_removed_at')
        batch_op.create_index('ix_apple_registrations_card_id', ['card_id'], unique=False)
        batch_op.drop_column('removed_at')
