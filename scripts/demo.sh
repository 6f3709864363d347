#!/usr/bin/env bash
# Quick start, command 1: install the package (with the demo extra) and run the demo pipeline
# on the embedded defaults: no AWS account, no server. Extra arguments go to `kombu-worker demo`.
source "$(dirname "$0")/bootstrap.sh"
ensure_venv
pip_install -e '.[demo]'
exec .venv/bin/kombu-worker demo "$@"
