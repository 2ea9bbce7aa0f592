# puma's config DSL (lib/puma/dsl.rb): bind URIs.
workers 2
bind 'tcp://0.0.0.0:3000'
bind "unix:///run/puma/app.sock"
