"""analytics: wallet events, feedback invitations, challenges and badges

Wallet events are filled from what the registrations and Google object states say now:
an Apple registration is an install at its created_at (and a removal at its removed_at);
a saved Google object an install at saved_changed_at, an unsaved one a removal then.

Revision ID: 4941f4835eba
Revises: b7e1d4a90c25
Create Date: 2026-11-29 06:40:11.983063

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4941f4835eba'
down_revision = 'b7e1d4a90c25'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('challenges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('texts', sa.JSON(), nullable=True),
    sa.Column('kind', sa.Enum('visits', 'rewards', 'locations', name='challenge_kind', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('target', sa.Integer(), nullable=False),
    sa.Column('window_days', sa.Integer(), nullable=True),
    sa.Column('bonus_points', sa.BigInteger(), nullable=True),
    sa.Column('position', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('bonus_points > 0', name=op.f('ck_challenges_bonus_points_positive')),
    sa.CheckConstraint('target > 0', name=op.f('ck_challenges_target_positive')),
    sa.CheckConstraint('window_days > 0', name=op.f('ck_challenges_window_days_positive')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_challenges_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_challenges'))
    )
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_challenges_program_id'), ['program_id'], unique=False)

    op.create_table('wallet_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.Enum('apple', 'google', name='wallet_platform', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('kind', sa.Enum('installed', 'removed', name='wallet_event_kind', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_wallet_events_card_id_cards')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_wallet_events_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wallet_events'))
    )
    with op.batch_alter_table('wallet_events', schema=None) as batch_op:
        batch_op.create_index('ix_wallet_events_card_id', ['card_id'], unique=False)
        batch_op.create_index('ix_wallet_events_program_id_at', ['program_id', 'at'], unique=False)

    op.create_table('card_badges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('challenge_id', sa.Integer(), nullable=False),
    sa.Column('earned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_card_badges_card_id_cards')),
    sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], name=op.f('fk_card_badges_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_card_badges_entry_id_ledger_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_badges')),
    sa.UniqueConstraint('card_id', 'challenge_id', name=op.f('uq_card_badges_card_id_challenge_id'))
    )
    with op.batch_alter_table('card_badges', schema=None) as batch_op:
        batch_op.create_index('ix_card_badges_challenge_id_earned_at', ['challenge_id', 'earned_at'], unique=False)

    op.create_table('feedback_invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('location_id', sa.Integer(), nullable=True),
    sa.Column('staff_member_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('score', sa.SmallInteger(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=True),
    sa.CheckConstraint('score >= 0 AND score <= 10', name=op.f('ck_feedback_invitations_score_0_to_10')),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_feedback_invitations_card_id_cards')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_feedback_invitations_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['location_id'], ['program_locations.id'], name=op.f('fk_feedback_invitations_location_id_program_locations')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_feedback_invitations_program_id_programs')),
    sa.ForeignKeyConstraint(['staff_member_id'], ['staff_members.id'], name=op.f('fk_feedback_invitations_staff_member_id_staff_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback_invitations')),
    sa.UniqueConstraint('token', name=op.f('uq_feedback_invitations_token'))
    )
    with op.batch_alter_table('feedback_invitations', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_invitations_card_id_created_at', ['card_id', 'created_at'], unique=False)
        batch_op.create_index('ix_feedback_invitations_program_id_answered_at', ['program_id', 'answered_at'], unique=False)

    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feedback_every_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('feedback_lock_screen', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('value_of_1000_points', sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint('feedback_every_days_positive', 'feedback_every_days > 0')
        batch_op.create_check_constraint('value_of_1000_points_non_negative',
                                         'value_of_1000_points >= 0')

    op.execute("""
        INSERT INTO wallet_events (program_id, card_id, platform, kind, device_id, at)
        SELECT c.program_id, r.card_id, 'apple', 'installed', r.device_id, r.created_at
        FROM apple_registrations r JOIN cards c ON c.id = r.card_id
    """)
    op.execute("""
        INSERT INTO wallet_events (program_id, card_id, platform, kind, device_id, at)
        SELECT c.program_id, r.card_id, 'apple', 'removed', r.device_id, r.removed_at
        FROM apple_registrations r JOIN cards c ON c.id = r.card_id
        WHERE r.removed_at IS NOT NULL
    """)
    op.execute("""
        INSERT INTO wallet_events (program_id, card_id, platform, kind, device_id, at)
        SELECT c.program_id, g.card_id, 'google',
               CASE WHEN g.saved THEN 'installed' ELSE 'removed' END, NULL, g.saved_changed_at
        FROM google_objects g JOIN cards c ON c.id = g.card_id
        WHERE g.saved_changed_at IS NOT NULL
    """)



def downgrade():
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_constraint('value_of_1000_points_non_negative', type_='check')
        batch_op.drop_constraint('feedback_every_days_positive', type_='check')
        batch_op.drop_column('value_of_1000_points')
        batch_op.drop_column('feedback_lock_screen')
        batch_op.drop_column('feedback_every_days')

    with op.batch_alter_table('feedback_invitations', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_invitations_program_id_answered_at')
        batch_op.drop_index('ix_feedback_invitations_card_id_created_at')

    op.drop_table('feedback_invitations')
    with op.batch_alter_table('card_badges', schema=None) as batch_op:
        batch_op.drop_index('ix_card_badges_challenge_id_earned_at')

    op.drop_table('card_badges')
    with op.batch_alter_table('wallet_events', schema=None) as batch_op:
        batch_op.drop_index('ix_wallet_events_program_id_at')
        batch_op.drop_index('ix_wallet_events_card_id')

    op.drop_table('wallet_events')
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_challenges_program_id'))

    op.drop_table('challenges')
