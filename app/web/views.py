"""Public pages."""

from __future__ import annotations

from flask import Blueprint, render_template

from app.loyalty import programs

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", programs=programs.all_programs())
