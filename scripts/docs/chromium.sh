# Sourced by scripts/test.sh: set $CHROMIUM to a headless-capable Chromium, installing Debian's
# `chromium` package with apt-get when none is found and we are root; empty when impossible.
CHROMIUM=""
_find_chromium() {
  local name
  for name in ${CHROMIUM_BIN:-} chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then CHROMIUM="$(command -v "$name")"; return 0; fi
  done
  return 1
}
if ! _find_chromium && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[chromium] installing Debian's chromium package (apt-get, once)" >&2
  _log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >"$_log" 2>&1; then
    echo "[chromium] apt-get failed; last lines of its log:" >&2
    tail -n 5 "$_log" >&2
  fi
  rm -f "$_log"
  _find_chromium || true
fi
export CHROMIUM
