"""gunicorn settings for Pointpass: ``gunicorn -c python:app.gunicorn_conf wsgi:app``.

The access log goes to standard output through :class:`app.logs.GunicornLogger`, which keeps
the card page and pass download tokens (in request lines and ``Referer`` headers) and
credential headers out of it; the error log goes to standard error, redacted likewise.
Options given on the command line (workers, threads, bind) override these.
"""

logger_class = "app.logs.GunicornLogger"
accesslog = "-"
errorlog = "-"
