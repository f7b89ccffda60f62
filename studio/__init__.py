"""studio: the services behind the Streamlit app and the CLI.

Accounts and sessions (`auth`), the SQLite store (`store`), PDF and JSON reports (`reports`),
dataset statistics (`eda`), safe zip extraction (`zipsafe`), model comparison (`comparison`) and
the command line (`cli`). The pages and the CLI use these; the inference core in `emotion/` never
imports them (tests/test_architecture.py checks it).
"""
