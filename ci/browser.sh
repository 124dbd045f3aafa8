#!/usr/bin/env bash
# Installs Debian's headless-capable chromium for the gallery's browser test (tests/unit/test_gallery.py).
# Needs root and apt-get; without them it says so and exits 0 (the browser test then skips, or fails
# when S3A_REQUIRE_BROWSER=1, as CI sets).
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ci/browser.sh: chromium is missing and cannot be installed here (needs root and apt-get):" \
    "the browser test skips" >&2
  exit 0
fi
echo "ci/browser.sh: installing chromium (log: /tmp/s3a-browser-apt.log)" >&2
{
  DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
} >/tmp/s3a-browser-apt.log 2>&1 || {
  tail -n 15 /tmp/s3a-browser-apt.log >&2
  echo "ci/browser.sh: apt-get install chromium failed" >&2
  exit 1
}
