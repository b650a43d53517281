#!/usr/bin/env bash
# Asks the bash completion in FILE, as bash-completion would, to complete `ssmax-card ver`, and
# prints the candidates (deb-check.sh expects `verify`).
source "$1"
fn=$(complete -p ssmax-card | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=(ssmax-card ver)
COMP_CWORD=1
COMP_LINE="ssmax-card ver"
COMP_POINT=${#COMP_LINE}
"$fn" ssmax-card ver ssmax-card
printf '%s\n' "${COMPREPLY[@]}"
