#!/usr/bin/env bash
# Regenerates the translation template po/livewire.pot from the files in po/POTFILES
# (GtkBuilder templates and Rust sources), with xgettext from GNU gettext (package
# `gettext`). xgettext has no Rust mode; the C lexer reads `gettext("…")` calls in Rust
# correctly (plain string literals only; raw strings are not seen).
#   scripts/update-po.sh           write po/livewire.pot
#   scripts/update-po.sh OUT.pot   write elsewhere (tests/po.rs compares with the kept one)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-po/livewire.pot}
export LC_ALL=C.UTF-8 # the strings are UTF-8 (“quotes”, —)
mapfile -t files < <(grep -v '^\s*\(#\|$\)' po/POTFILES)
ui=() rs=()
for f in "${files[@]}"; do
  case "$f" in
    *.ui) ui+=("$f") ;;
    *.rs) rs+=("$f") ;;
  esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (gettext 0.21 says its GtkBuilder rules are a "fallback": they are the ones it ships)
xgettext --from-code=UTF-8 --package-name=livewire --package-version=0.1 \
  --sort-by-file -o "$tmp/livewire.pot" "${ui[@]}" \
  2> >(grep -v 'fallback ITS rule file' >&2)
xgettext --from-code=UTF-8 --language=C --keyword= --keyword=gettext --keyword=gettext_with:1 \
  --keyword=ngettext_with:1,2 --keyword=n_ \
  --add-comments=Translators --sort-by-file --join-existing -o "$tmp/livewire.pot" "${rs[@]}"
# No creation date and a UTF-8 charset: regenerating without changes changes nothing.
sed -e '/^"POT-Creation-Date:/d' -e 's/charset=CHARSET/charset=UTF-8/' "$tmp/livewire.pot" > "$out"
echo "wrote $out ($(grep -c '^msgid "' "$out") strings)"
