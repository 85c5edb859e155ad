"""apple devices: the tag of their last list of changed serials

Revision ID: 8a3b4c5d6e7f
Revises: 7f2a3b4c5d6e
Create Date: 2026-11-30 02:40:00

A device that asked for its changed serials after a change needs no push for it: a drain
resuming the rows of a drain that died mid-push skips the devices that have since asked,
instead of pushing them a second time.
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '8a3b4c5d6e7f'
down_revision = '7f2a3b4c5d6e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apple_devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('listed_through', sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table('apple_devices', schema=None) as batch_op:
        batch_op.drop_column('listed_through')
