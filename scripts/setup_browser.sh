#!/usr/bin/env bash
# The browser for the UI tests (nbs/10a_api.ipynb): Debian's chromium, driven by Playwright through
# executable_path=/usr/bin/chromium (never `playwright install`, which downloads a browser). Idempotent.
#   bash scripts/setup_browser.sh
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present) at /usr/bin/chromium"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium with apt-get ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/setup_browser.log 2>&1 || {
    echo "apt-get install failed (see /tmp/setup_browser.log); trying once more after apt-get update" >&2
    apt-get update >>/tmp/setup_browser.log 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >>/tmp/setup_browser.log 2>&1
  }
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null) at /usr/bin/chromium"
else
  cat >&2 <<'MSG'
chromium is missing (the browser tests need /usr/bin/chromium). Install it as root:
    sudo apt-get install -y chromium          # Debian / Ubuntu (the Debian package, not the snap)
then run this script again. The Python side comes with the test extra: pip install -e ".[test]"
MSG
  exit 1
fi
