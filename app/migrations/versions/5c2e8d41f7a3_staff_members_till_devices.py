"""staff members with a PIN, till devices, and who acted at the till

Revision ID: 5c2e8d41f7a3
Revises: e3b71f0c5a92
Create Date: 2026-11-28 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c2e8d41f7a3'
down_revision = 'e3b71f0c5a92'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('staff_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('pin_hash', sa.String(length=200), nullable=False),
    sa.Column('language', sa.String(length=2), server_default='en', nullable=False),
    sa.Column('active', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('failed_pin_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_members'))
    )
    op.create_table('staff_member_locations',
    sa.Column('staff_member_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['program_locations.id'], name=op.f('fk_staff_member_locations_location_id_program_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_member_id'], ['staff_members.id'], name=op.f('fk_staff_member_locations_staff_member_id_staff_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_member_id', 'location_id', name=op.f('pk_staff_member_locations'))
    )
    op.create_table('till_devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=True),
    sa.Column('enrol_token_hash', sa.String(length=64), nullable=True),
    sa.Column('enrol_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('secret_hash', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['program_locations.id'], name=op.f('fk_till_devices_location_id_program_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_till_devices')),
    sa.UniqueConstraint('enrol_token_hash', name=op.f('uq_till_devices_enrol_token_hash'))
    )
    with op.batch_alter_table('till_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_till_devices_location_id'), ['location_id'], unique=False)

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_member_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('device_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_staff_member_id_staff_members'), 'staff_members', ['staff_member_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_device_id_till_devices'), 'till_devices', ['device_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_location_id_program_locations'), 'program_locations', ['location_id'], ['id'])

    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.alter_column('staff_key_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('staff_member_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('device_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_redemptions_staff_member_id_staff_members'), 'staff_members', ['staff_member_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_redemptions_device_id_till_devices'), 'till_devices', ['device_id'], ['id'])


def downgrade():
    # Redemptions by staff members have no key: they cannot stay once staff_key_id is required.
    op.execute("DELETE FROM redemptions WHERE staff_key_id IS NULL")
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_redemptions_device_id_till_devices'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_redemptions_staff_member_id_staff_members'), type_='foreignkey')
        batch_op.drop_column('device_id')
        batch_op.drop_column('staff_member_id')
        batch_op.alter_column('staff_key_id', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_location_id_program_locations'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_device_id_till_devices'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_staff_member_id_staff_members'), type_='foreignkey')
        batch_op.drop_column('location_id')
        batch_op.drop_column('device_id')
        batch_op.drop_column('staff_member_id')

    with op.batch_alter_table('till_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_till_devices_location_id'))

    op.drop_table('till_devices')
    op.drop_table('staff_member_locations')
    op.drop_table('staff_members')
