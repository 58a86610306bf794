#!/usr/bin/env bash
# The server and browser some tests drive: Debian's `prometheus` package (prometheus, promtool) and `chromium`.
# Installs the missing ones with apt-get, as root or through sudo without a password prompt, saying what it installs.
#
#   scripts/system-deps.sh [--require | --if-possible] [--dry-run]
#     --require      (default; `make system-deps`, .ci/run) fail when one is missing and cannot be installed here
#     --if-possible  (`make test`) where none can be installed, say nothing and succeed: the test run then names,
#                    in one line, the tests it will skip and the command that installs what they need
#     --dry-run      print the apt-get commands instead of running them
set -euo pipefail

HINT="sudo make system-deps"  # tests/conftest.py INSTALL_HINT says the same
mode=require
dry_run=false
for arg in "$@"; do
  case "$arg" in
    --require) mode=require ;;
    --if-possible) mode=if-possible ;;
    --dry-run) dry_run=true ;;
    *) echo "usage: $0 [--require | --if-possible] [--dry-run]" >&2; exit 2 ;;
  esac
done

# Debian packages that are missing, judged by the commands the tests look for (as tests/conftest.py does).
missing_packages() {
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then echo prometheus; fi
  if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then echo chromium; fi
}

mapfile -t need < <(missing_packages)
if ((${#need[@]} == 0)); then
  echo "system-deps: prometheus, promtool and chromium are installed"
  exit 0
fi

# A step that failed: an error, except for `make test`, which goes on and skips the tests that need it.
fail() {
  echo "system-deps: $*" >&2
  [ "$mode" = if-possible ] && exit 0
  exit 1
}

# How this machine can install: apt-get as root, or through sudo that does not ask for a password.
why=""
if ! command -v apt-get >/dev/null; then
  why="there is no apt-get here; install them with this system's package manager"
elif [ "$(id -u)" -eq 0 ]; then
  as=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as=(sudo -n)
else
  why="installing needs root or sudo without a password; run \`$HINT\`"
fi
if [ -n "$why" ]; then
  [ "$mode" = if-possible ] && exit 0  # the test run names, in one line, what it skips and how to install it
  fail "${need[*]} missing: $why"
fi

update=("${as[@]}" apt-get update -qq)
install=("${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}")
what="Debian's ${need[*]} for the Prometheus and browser tests"
if $dry_run; then
  echo "system-deps: dry run: would install $what: ${update[*]} && ${install[*]}"
  exit 0
fi
echo "system-deps: installing $what: ${install[*]}"
"${update[@]}" && "${install[@]}" >/dev/null || fail "apt-get could not install ${need[*]}"
hash -r
mapfile -t still < <(missing_packages)
((${#still[@]} == 0)) || fail "apt-get installed ${still[*]}, but the commands the tests need are still not on PATH"
echo "system-deps: installed ${need[*]}"
