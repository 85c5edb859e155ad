"""campaigns, their recipients, and indexes for segments

Revision ID: 44f71068c116
Revises: 0675ea766296
Create Date: 2026-11-29 03:46:29.285990

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '44f71068c116'
down_revision = '0675ea766296'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('segment', sa.JSON(), nullable=False),
    sa.Column('messages', sa.JSON(), nullable=False),
    sa.Column('bonus_points', sa.BigInteger(), nullable=True),
    sa.Column('holdout_percent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.Enum('draft', 'scheduled', 'sending', 'sent', 'cancelled', name='campaign_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recipients_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('held_out_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sent_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('skipped_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pass_update_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('holdout_percent >= 0 AND holdout_percent <= 50', name=op.f('ck_campaigns_holdout_percent_range')),
    sa.ForeignKeyConstraint(['pass_update_id'], ['pass_updates.id'], name=op.f('fk_campaigns_pass_update_id_pass_updates')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_campaigns_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_program_id'), ['program_id'], unique=False)
        batch_op.create_index('ix_campaigns_status_scheduled_at', ['status', 'scheduled_at'], unique=False)

    op.create_table('campaign_recipients',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('held_out', sa.Boolean(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_recipients_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_campaign_recipients_card_id_cards'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'card_id', name=op.f('pk_campaign_recipients'))
    )
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index('ix_cards_program_id_status_id', ['program_id', 'status', 'id'], unique=False)

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_location_id_card_id', ['location_id', 'card_id'], unique=False, postgresql_where=sa.text('location_id IS NOT NULL'), sqlite_where=sa.text('location_id IS NOT NULL'))
        batch_op.create_index('ix_ledger_entries_visits_card_id_created_at', ['card_id', 'created_at'], unique=False, postgresql_where=sa.text("kind IN ('earn', 'redeem')"), sqlite_where=sa.text("kind IN ('earn', 'redeem')"))
        batch_op.create_index('ix_ledger_entries_visits_created_at_card_id', ['created_at', 'card_id'], unique=False, postgresql_where=sa.text("kind IN ('earn', 'redeem')"), sqlite_where=sa.text("kind IN ('earn', 'redeem')"))

    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.create_index('ix_point_lots_left_expires_at_card_id', ['expires_at', 'card_id'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))




def downgrade():

    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_point_lots_left_expires_at_card_id', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_visits_created_at_card_id', postgresql_where=sa.text("kind IN ('earn', 'redeem')"), sqlite_where=sa.text("kind IN ('earn', 'redeem')"))
        batch_op.drop_index('ix_ledger_entries_visits_card_id_created_at', postgresql_where=sa.text("kind IN ('earn', 'redeem')"), sqlite_where=sa.text("kind IN ('earn', 'redeem')"))
        batch_op.drop_index('ix_ledger_entries_location_id_card_id', postgresql_where=sa.text('location_id IS NOT NULL'), sqlite_where=sa.text('location_id IS NOT NULL'))

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_program_id_status_id')

    op.drop_table('campaign_recipients')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index('ix_campaigns_status_scheduled_at')
        batch_op.drop_index(batch_op.f('ix_campaigns_program_id'))

    op.drop_table('campaigns')

