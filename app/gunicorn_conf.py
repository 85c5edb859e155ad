"""gunicorn settings for Pointpass: ``gunicorn -c python:app.gunicorn_conf wsgi:app``.

The access log goes to standard output through :class:`app.logs.GunicornLogger`, which keeps
the card page and pass download tokens (in request lines and ``Referer`` headers) and
credential headers out of it; the error log goes to standard error, redacted likewise.
Each access line is the "combined" format followed by the request id (the ``X-Request-Id``
the service answered) and the response time in seconds; with ``POINTPASS_LOG_FORMAT=json``
both logs write one JSON object per line instead.
Options given on the command line (workers, threads, bind) override these.
"""

logger_class = "app.logs.GunicornLogger"
accesslog = "-"
errorlog = "-"
access_log_format = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                     '%({x-request-id}o)s %(L)s')
