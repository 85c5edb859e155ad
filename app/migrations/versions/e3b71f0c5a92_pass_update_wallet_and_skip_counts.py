"""pass update counts: cards with a wallet, devices skipped and why

Revision ID: e3b71f0c5a92
Revises: 4d1c7e9a2b60
Create Date: 2026-11-28 19:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e3b71f0c5a92'
down_revision = '4d1c7e9a2b60'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pass_updates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cards_with_wallet', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('devices_skipped', sa.Integer(), server_default='0', nullable=False))

    op.create_table('pass_update_skips',
    sa.Column('update_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('devices', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['update_id'], ['pass_updates.id'], name=op.f('fk_pass_update_skips_update_id_pass_updates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('update_id', 'reason', name=op.f('pk_pass_update_skips'))
    )


def downgrade():
    op.drop_table('pass_update_skips')
    with op.batch_alter_table('pass_updates', schema=None) as batch_op:
        batch_op.drop_column('devices_skipped')
        batch_op.drop_column('cards_with_wallet')
