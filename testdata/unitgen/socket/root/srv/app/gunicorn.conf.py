# gunicorn's settings file (docs: "Configuration File"): bind is a list.
bind = ["127.0.0.1:8000", "unix:/run/gunicorn/app.sock"]
workers = 4
backlog = 1024
graceful_timeout = 30
