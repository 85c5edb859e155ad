"""a program's messages to every card go on its Google loyalty class

Revision ID: 6e1f2a3b4c5d
Revises: 5d0c1e2f3a4b
Create Date: 2026-11-30 00:45:00

``google_classes.messages_through``: the last update (by id) whose message to every card of
the program Google shows on the class. Existing classes start at the program's newest
update, so no earlier message is added to a class again.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6e1f2a3b4c5d'
down_revision = '5d0c1e2f3a4b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('google_classes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('messages_through', sa.BigInteger(), server_default='0',
                                      nullable=False))
    op.execute("UPDATE google_classes SET messages_through = COALESCE((SELECT MAX(id) FROM "
               "pass_updates WHERE pass_updates.program_id = google_classes.program_id), 0)")


def downgrade():
    with op.batch_alter_table('google_classes', schema=None) as batch_op:
        batch_op.drop_column('messages_through')
