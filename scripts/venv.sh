# Sourced by scripts/test and scripts/selftest: make the venv ($VENV, default .venv, built with
# $PYTHON, default python3) and install this package editable (regenerating src/mistralai/)
# with the gcp extra, plus any further pip arguments given to make_venv.
make_venv() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  PY=${PYTHON:-python3}
  VENV=${VENV:-.venv}
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[gcp]" "$@"
}
