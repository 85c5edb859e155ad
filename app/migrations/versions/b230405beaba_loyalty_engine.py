"""loyalty engine: point lots, what debits consumed, earning rules, program settings

Every card with points gets one opening lot holding its balance (available, never expiring).

Revision ID: b230405beaba
Revises: f4a1c2d3e5b6
Create Date: 2026-11-29 00:20:04.580505

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b230405beaba'
down_revision = 'f4a1c2d3e5b6'
branch_labels = None
depends_on = None

OLD_KINDS = ('earn', 'redeem', 'adjust', 'expire', 'reverse')
KINDS = OLD_KINDS + ('release', 'refund', 'bonus')


def upgrade():
    op.create_table('earning_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('welcome', 'birthday', 'referral', 'multiplier', 'bonus', name='rule_kind', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=True),
    sa.Column('percent', sa.Integer(), nullable=True),
    sa.Column('referrer_points', sa.BigInteger(), nullable=True),
    sa.Column('referee_points', sa.BigInteger(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('stackable', sa.Boolean(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('percent > 100', name=op.f('ck_earning_rules_rule_percent_above_100')),
    sa.CheckConstraint('points > 0', name=op.f('ck_earning_rules_rule_points_positive')),
    sa.CheckConstraint('referrer_points >= 0 AND referee_points >= 0', name=op.f('ck_earning_rules_referral_points_non_negative')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_earning_rules_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_earning_rules'))
    )
    with op.batch_alter_table('earning_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_earning_rules_program_id'), ['program_id'], unique=False)

    op.create_table('point_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('pending', sa.Boolean(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('points > 0', name=op.f('ck_point_lots_lot_points_positive')),
    sa.CheckConstraint('remaining >= 0 AND remaining <= points', name=op.f('ck_point_lots_lot_remaining_in_range')),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_point_lots_card_id_cards')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_point_lots_entry_id_ledger_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_lots'))
    )
    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.create_index('ix_point_lots_entry_id', ['entry_id'], unique=False)
        batch_op.create_index('ix_point_lots_expiring', ['expires_at'], unique=False, postgresql_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'), sqlite_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'))
        batch_op.create_index('ix_point_lots_open', ['card_id'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.create_index('ix_point_lots_pending', ['available_at'], unique=False, postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))

    op.create_table('lot_consumptions',
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('points > 0', name=op.f('ck_lot_consumptions_consumed_points_positive')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_lot_consumptions_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['lot_id'], ['point_lots.id'], name=op.f('fk_lot_consumptions_lot_id_point_lots')),
    sa.PrimaryKeyConstraint('entry_id', 'lot_id', name=op.f('pk_lot_consumptions'))
    )
    with op.batch_alter_table('lot_consumptions', schema=None) as batch_op:
        batch_op.create_index('ix_lot_consumptions_lot_id', ['lot_id'], unique=False)

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_points', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('rule_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('purchase_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('shortfall', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_ledger_entries_purchase_id', ['purchase_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_rule_id_earning_rules'), 'earning_rules', ['rule_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_purchase_id_ledger_entries'), 'ledger_entries', ['purchase_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_entry_kind'), type_='check')
        batch_op.create_check_constraint('entry_kind', f"kind IN ({', '.join(repr(k) for k in KINDS)})")
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_points_non_zero'), type_='check')
        batch_op.create_check_constraint('points_non_zero', "points <> 0 OR pending_points <> 0 OR kind = 'refund'")
        batch_op.create_check_constraint('shortfall_non_negative', 'shortfall >= 0')

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('points_expire_after_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('expiry_reminder_days', sa.Integer(), server_default='14', nullable=False))
        batch_op.add_column(sa.Column('pending_days', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('refund_shortfall', sa.String(length=8), server_default='clamp', nullable=False))
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False))
        batch_op.create_check_constraint('expire_after_days_positive', 'points_expire_after_days > 0')
        batch_op.create_check_constraint('expiry_reminder_days_non_negative', 'expiry_reminder_days >= 0')
        batch_op.create_check_constraint('pending_days_non_negative', 'pending_days >= 0')
        batch_op.create_check_constraint('refund_shortfall_kind', "refund_shortfall IN ('clamp', 'forgive')")

    # What cards hold today becomes one opening lot each: available, never expiring.
    op.execute(
        "INSERT INTO point_lots (card_id, entry_id, points, remaining, pending, available_at, "
        "expires_at, reminded_at, created_at) "
        "SELECT id, NULL, balance, balance, false, updated_at, NULL, NULL, updated_at "
        "FROM cards WHERE balance > 0")



def downgrade():
    # Entries of the new kinds cannot be kept by the old schema.
    op.execute("DELETE FROM lot_consumptions")
    op.execute("DELETE FROM point_lots")
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_programs_refund_shortfall_kind'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_programs_pending_days_non_negative'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_programs_expiry_reminder_days_non_negative'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_programs_expire_after_days_positive'), type_='check')
        batch_op.drop_column('time_zone')
        batch_op.drop_column('refund_shortfall')
        batch_op.drop_column('pending_days')
        batch_op.drop_column('expiry_reminder_days')
        batch_op.drop_column('points_expire_after_days')

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_purchase_id_ledger_entries'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_rule_id_earning_rules'), type_='foreignkey')
        batch_op.drop_index('ix_ledger_entries_purchase_id')
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_shortfall_non_negative'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_points_non_zero'), type_='check')
        batch_op.create_check_constraint('points_non_zero', 'points <> 0')
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_entry_kind'), type_='check')
        batch_op.create_check_constraint('entry_kind', f"kind IN ({', '.join(repr(k) for k in OLD_KINDS)})")
        batch_op.drop_column('shortfall')
        batch_op.drop_column('purchase_id')
        batch_op.drop_column('rule_id')
        batch_op.drop_column('pending_points')

    with op.batch_alter_table('lot_consumptions', schema=None) as batch_op:
        batch_op.drop_index('ix_lot_consumptions_lot_id')

    op.drop_table('lot_consumptions')
    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_point_lots_pending', postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))
        batch_op.drop_index('ix_point_lots_open', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.drop_index('ix_point_lots_expiring', postgresql_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'), sqlite_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'))
        batch_op.drop_index('ix_point_lots_entry_id')

    op.drop_table('point_lots')
    with op.batch_alter_table('earning_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_earning_rules_program_id'))

    op.drop_table('earning_rules')
