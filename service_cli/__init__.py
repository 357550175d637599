"""The service's command line: `clo admin`, `clo jobs`, `clo demo`, mounted on the library's `clo`.

`clo/` stays the ML library and imports nothing from here; `service_cli.main:app` is the `clo`
console script (the library's Typer app with the service commands added).
"""
