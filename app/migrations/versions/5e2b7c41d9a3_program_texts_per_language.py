"""program texts per language (terms and description)

Revision ID: 5e2b7c41d9a3
Revises: 5c2e8d41f7a3
Create Date: 2026-11-28 21:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e2b7c41d9a3'
down_revision = '5c2e8d41f7a3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('texts', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('texts')
