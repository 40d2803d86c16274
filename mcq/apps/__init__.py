"""What the sample apps (``apps/``) need from mcq: the web app's server and the reference vectors apps check their
pre- and post-processing against."""
