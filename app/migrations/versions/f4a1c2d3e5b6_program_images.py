"""program images: a program's own logo, strip and icon

Revision ID: f4a1c2d3e5b6
Revises: 5e2b7c41d9a3
Create Date: 2026-11-28 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f4a1c2d3e5b6'
down_revision = '5e2b7c41d9a3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('program_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('logo', 'strip', 'icon')", name=op.f('ck_program_images_image_kind')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_program_images_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_program_images')),
    sa.UniqueConstraint('program_id', 'kind', name=op.f('uq_program_images_program_id_kind'))
    )
    with op.batch_alter_table('program_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_program_images_program_id'), ['program_id'], unique=False)


def downgrade():
    with op.batch_alter_table('program_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_program_images_program_id'))

    op.drop_table('program_images')
