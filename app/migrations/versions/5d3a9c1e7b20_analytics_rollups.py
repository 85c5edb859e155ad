"""analytics rollups: per-day counts, activity gaps, card activity and progress

The sweep rolls up closed program-local days into these tables (docs/metrics.md); a BRIN
index on ledger_entries.created_at (PostgreSQL) finds one day's entries without a write cost
on the earn path.

Revision ID: 5d3a9c1e7b20
Revises: 4941f4835eba
Create Date: 2026-11-29 07:13:05.503005

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d3a9c1e7b20'
down_revision = '4941f4835eba'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('analytics_activity_days',
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('activity', sa.String(length=8), nullable=False),
    sa.Column('gaps', sa.LargeBinary(), nullable=False),
    sa.Column('cards', sa.LargeBinary(), nullable=False),
    sa.Column('seconds', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_analytics_activity_days_program_id_programs')),
    sa.PrimaryKeyConstraint('program_id', 'day', 'activity', name=op.f('pk_analytics_activity_days'))
    )
    op.create_table('analytics_day_counts',
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_analytics_day_counts_program_id_programs')),
    sa.PrimaryKeyConstraint('program_id', 'name', 'day', 'key', name=op.f('pk_analytics_day_counts'))
    )
    op.create_table('analytics_progress',
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('rolled_through', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_analytics_progress_program_id_programs')),
    sa.PrimaryKeyConstraint('program_id', name=op.f('pk_analytics_progress'))
    )
    op.create_table('analytics_card_activity',
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('visit_last', sa.Date(), nullable=True),
    sa.Column('visit_prev', sa.Date(), nullable=True),
    sa.Column('redeem_last', sa.Date(), nullable=True),
    sa.Column('redeem_prev', sa.Date(), nullable=True),
    sa.Column('purchase_last', sa.Date(), nullable=True),
    sa.Column('purchase_prev', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_analytics_card_activity_card_id_cards')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_analytics_card_activity_program_id_programs')),
    sa.PrimaryKeyConstraint('card_id', name=op.f('pk_analytics_card_activity'))
    )
    with op.batch_alter_table('analytics_card_activity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analytics_card_activity_program_id'), ['program_id'], unique=False)

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index('ix_cards_voided', ['program_id'], unique=False, postgresql_where=sa.text("status = 'voided'"), sqlite_where=sa.text("status = 'voided'"))

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_created_at', ['created_at'], unique=False, postgresql_using='brin')

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index('ix_members_program_id_created_at', ['program_id', 'created_at'], unique=False)



def downgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_program_id_created_at')

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_created_at', postgresql_using='brin')

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_voided', postgresql_where=sa.text("status = 'voided'"), sqlite_where=sa.text("status = 'voided'"))

    with op.batch_alter_table('analytics_card_activity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analytics_card_activity_program_id'))

    op.drop_table('analytics_card_activity')
    op.drop_table('analytics_progress')
    op.drop_table('analytics_day_counts')
    op.drop_table('analytics_activity_days')
