"""`python -m camlit`: the `camlit` command."""

from camlit.console import main

main()
