"""segment columns on cards: last visit, member language, birthday month, joined

The last visit and copies of the member's language, birthday month and joining time, with
covering indexes for segment counts.

Revision ID: 9d3e7b52c1a4
Revises: 44f71068c116
Create Date: 2026-11-29 04:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9d3e7b52c1a4'
down_revision = '44f71068c116'
branch_labels = None
depends_on = None

# PostgreSQL: what a segment count reads of a card, so it reads an index only.
SEGMENT_COLUMNS = ['tier_id', 'balance', 'member_language', 'member_birthday_month',
                   'member_joined_at']


def upgrade():
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_visit_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('member_language', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('member_birthday_month', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('member_joined_at', sa.DateTime(timezone=True), nullable=True))

    # Every card's latest visit (an earn or a redemption) so far; the ledger's postings keep
    # it from now on, in the transaction that writes the visit.
    op.execute(
        "UPDATE cards SET last_visit_at = (SELECT max(e.created_at) FROM ledger_entries e "
        "WHERE e.card_id = cards.id AND e.kind IN ('earn', 'redeem'))")
    # The member's fields (set once, at enrolment, with the card from now on).
    month = ("CAST(strftime('%m', m.birthday) AS INTEGER)"
             if op.get_bind().dialect.name == 'sqlite' else "extract(month FROM m.birthday)")
    op.execute(
        "UPDATE cards SET "
        "member_language = (SELECT m.language FROM members m WHERE m.id = cards.member_id), "
        f"member_birthday_month = (SELECT {month} FROM members m WHERE m.id = cards.member_id), "
        "member_joined_at = (SELECT m.created_at FROM members m WHERE m.id = cards.member_id)")

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_program_id_status_id')
        batch_op.create_index('ix_cards_program_id_status_id', ['program_id', 'status', 'id'],
                              unique=False,
                              postgresql_include=[*SEGMENT_COLUMNS, 'last_visit_at'])
        batch_op.create_index('ix_cards_program_id_status_last_visit_at',
                              ['program_id', 'status', 'last_visit_at'], unique=False,
                              postgresql_include=[*SEGMENT_COLUMNS, 'id'])


def downgrade():
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_program_id_status_last_visit_at')
        batch_op.drop_index('ix_cards_program_id_status_id')
        batch_op.create_index('ix_cards_program_id_status_id', ['program_id', 'status', 'id'],
                              unique=False)
        batch_op.drop_column('member_joined_at')
        batch_op.drop_column('member_birthday_month')
        batch_op.drop_column('member_language')
        batch_op.drop_column('last_visit_at')
