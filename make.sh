#!/bin/sh
# `make` for a machine that does not have it yet: installs make (Debian), then runs it.
#   sh make.sh run | sh make.sh test
set -e
cd "$(dirname "$0")"
if ! command -v make >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq make
fi
exec make "$@"
